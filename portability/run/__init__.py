"""Running a plan: one pytest session per cell (session.py, pytest_plugin.py), one case's execution
(case.py), judging its output (judge.py) and poisoning allocations to catch unwritten outputs (poison.py)."""
