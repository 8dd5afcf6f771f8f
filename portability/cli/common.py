"""What the `portability` subcommands share: `UsageError` (a bad flag or path, reported as one line with
exit code 2), loading and checking the matrix file, turning the --backends/--ops/... filter flags into
the plan's `Filters` (each value checked against what the matrix and the catalog declare, with the
closest names when one is mistyped), and checking the paths the commands write."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from portability.matrix.config import MatrixConfig
from portability.matrix.yaml_lines import one_of

EXIT_USAGE = 2


class UsageError(Exception):
    pass


def split_csv(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


def csv_flag(flag: str, value: str | None, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """A comma-separated flag's names, each one of `allowed`; given but empty (`--ops ''`) is an error,
    not "everything"."""
    names = split_csv(value)
    if value is not None and not names:
        raise UsageError(f"{flag}: empty, expected comma-separated {what} names (leave the flag out for all)")
    for name in names:
        if name not in allowed:
            raise UsageError(f"{flag}: unknown {what} '{name}', expected {one_of(name, allowed, what)}")
    return names


def load_config(matrix: str) -> MatrixConfig:
    from portability.catalog import all_tags, load_catalog
    from portability.matrix.config import load_matrix
    from portability.registry import is_adapter_reference

    validate_serving = None
    try:
        from portability.serving.settings import validate_serving
    except ImportError:
        pass
    cases = {name: tuple(c.name for c in spec.cases) for name, spec in load_catalog().items()}
    return load_matrix(matrix, is_adapter_reference, cases, tuple(sorted(all_tags())), validate_serving)


def parse_filters(args: argparse.Namespace, config: MatrixConfig) -> Any:
    from portability.catalog import all_tags, load_catalog
    from portability.devices import DEVICE_TYPES
    from portability.plan.cells import Filters
    from portability.spec import DTYPES

    declared = sorted({d for b in config.backends.values() for d in b.devices})
    devices = [*declared, *(t for t in DEVICE_TYPES if t not in declared)]
    return Filters(
        csv_flag("--backends", args.backends, tuple(config.backends), "backend"),
        csv_flag("--devices", args.devices, devices, "device"),
        csv_flag("--ops", args.ops, tuple(load_catalog()), "operator"),
        csv_flag("--dtypes", args.dtypes, tuple(DTYPES), "dtype"),
        csv_flag("--tags", args.tags, tuple(sorted(all_tags())), "tag"),
    )


def check_nonempty_plan(plan: Any, filters: Any, config: MatrixConfig, serving_only: bool = False) -> None:
    """Filters that select nothing are a usage error with the reason, not an empty scorecard."""
    flags = " ".join(
        f"--{name} {','.join(values)}"
        for name, values in (
            ("backends", filters.backends),
            ("devices", filters.devices),
            ("ops", filters.ops),
            ("dtypes", filters.dtypes),
            ("tags", filters.tags),
        )
        if values
    )
    if not plan.cells:
        cells = ", ".join(f"{b.name}@{d}" for b in config.backends.values() for d in b.devices)
        raise UsageError(
            f"{flags or 'the filters'}: no cell of {config.path} matches, expected one of {cells}"
        )
    available = [c for c in plan.cells if c.status == "available"]
    if serving_only or not available or plan.cases or plan.refused:
        return
    if not any(c.dtypes for c in available):
        declared = sorted({d for c in available for d in config.backends[c.backend].dtypes})
        raise UsageError(
            f"--dtypes {','.join(filters.dtypes)}: no selected cell runs these dtypes, expected some of "
            f"{', '.join(declared)}"
        )
    raise UsageError(
        f"{flags or config.path}: no operator case on {', '.join(c.id for c in available)}, expected "
        "filters that select at least one case (`portability list ops` shows operators' dtypes and tags)"
    )


def writable_dir(flag: str, path: Path, create: bool = True) -> Path:
    """`path` as a directory this process can write (created if missing, unless `create` is False:
    then only checked, through its nearest existing parent), or a one-line UsageError."""
    if path.exists() and not path.is_dir():
        raise UsageError(f"{flag}: {path} is a file, expected a directory")
    if not create:
        existing = next(p for p in (path.absolute(), *path.absolute().parents) if p.exists())
        if not existing.is_dir():
            raise UsageError(f"{flag}: {existing} is a file, expected {path} to be a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UsageError(f"{flag}: {existing} is not writable, expected a writable place for {path}")
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"{flag}: cannot create {path} ({exc.strerror}), expected a writable place"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{flag}: {path} is not writable, expected a writable directory")
    return path


def writable_file(flag: str, path: Path, create: bool = True) -> Path:
    """`path` as a file this process can write (its directory created if missing, unless `create` is
    False)."""
    if path.is_dir():
        raise UsageError(f"{flag}: {path} is a directory, expected a file")
    writable_dir(flag, path.parent, create)
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag}: {path} is not writable, expected a writable file")
    return path
