"""Results: the status table every verdict is derived from (status.py), the rows appended as cases
finish (store.py), and the run directory that alone names its files (rundir.py)."""
