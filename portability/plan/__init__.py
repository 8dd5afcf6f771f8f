"""matrix.yaml -> a plan of cells and cases (cells.py), and the order workers take them in (schedule.py)."""
