"""Operator catalog: one declarative file per family, each exporting `SPECS: list[OpSpec]`.

Installed as `portability.kernels` (see pyproject.toml). `portability.catalog` collects them.
"""
