"""What the `portability` subcommands share: `UsageError` (a bad flag or path, reported as one line with
exit code 2), loading and checking the matrix file, and turning the --backends/--ops/... filter flags into
the plan's `Filters`, each value checked against what the matrix and the catalog declare."""

from __future__ import annotations

import argparse
from typing import Any

from portability.matrix.config import MatrixConfig

EXIT_USAGE = 2


class UsageError(Exception):
    pass


def split_csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def load_config(matrix: str) -> MatrixConfig:
    from portability.catalog import all_tags, load_catalog
    from portability.matrix.config import load_matrix
    from portability.registry import is_adapter_reference

    validate_serving = None
    try:
        from portability.serving.settings import validate_serving
    except ImportError:
        pass
    return load_matrix(
        matrix, is_adapter_reference, tuple(load_catalog()), tuple(sorted(all_tags())), validate_serving
    )


def parse_filters(args: argparse.Namespace, config: MatrixConfig) -> Any:
    from portability.catalog import all_tags, load_catalog
    from portability.plan.cells import Filters
    from portability.spec import DTYPES

    f = Filters(
        split_csv(args.backends),
        split_csv(args.devices),
        split_csv(args.ops),
        split_csv(args.dtypes),
        split_csv(args.tags),
    )
    checks = [
        ("--backends", f.backends, tuple(config.backends)),
        ("--ops", f.ops, tuple(load_catalog())),
        ("--dtypes", f.dtypes, tuple(DTYPES)),
        ("--tags", f.tags, tuple(sorted(all_tags()))),
    ]
    for flag, given, allowed in checks:
        for item in given:
            if item not in allowed:
                raise UsageError(f"{flag}: unknown value '{item}', expected one of {', '.join(allowed)}")
    return f
