"""Which overload -> OpInfo table the aten specs use: the one derived for the installed FlagGems and torch.

A table (see opinfo.py) depends on what FlagGems registers and on torch's op_db, so it is keyed by both:
the flag_gems version, its git commit when it is imported from a source tree, a digest of its registered
overloads (so an edited checkout that adds an operator is a new key even without a version bump), the
torch version and the table format. Lookup order: a checked-in table whose key matches
(kernels/aten/_opinfo_table*.py, one per FlagGems the project ships evidence for), then the on-disk cache
($PORTABILITY_CACHE, default ~/.cache/flagos-portability, under opinfo/), else the table is derived now
(tens of seconds on a laptop CPU; see README) and cached. Concurrent processes (pytest-xdist workers) wait
on one lock and reuse the first one's result. Without flag_gems the default checked-in table is used.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

CACHE_ENV = "PORTABILITY_CACHE"
FORMAT = 2  # bump when the derivation changes what a table holds
Table = dict[str, dict[str, Any]]
Pairs = list[tuple[str, str]]  # (aten overload key, FlagGems function name)


@dataclass(frozen=True)
class Derived:
    table: Table
    key: dict[str, str]
    pairs: Pairs  # the installed registrations (empty without flag_gems)
    source: str  # "checked-in <module>", "cache <path>", "derived in <s> s -> <path>", or why neither


def registry_pairs() -> Pairs:
    """The installed flag_gems' registrations, read from its source (it is never imported here)."""
    try:  # fg-live's reader (portability/flaggems/), once merged; the older one in portability.coverage
        from portability.flaggems.registry import registrations
    except ImportError:
        from portability.coverage import flag_gems_registry

        return flag_gems_registry()
    return [(r.key, r.function) for r in registrations()]


@cache
def installed_registry() -> dict[str, frozenset[str]] | None:
    """Aten overload -> the function names the installed flag_gems registers for it (None: not installed)."""
    if _flag_gems_dir() is None:
        return None
    found: dict[str, set[str]] = {}
    for key, fn in registry_pairs():
        found.setdefault(key, set()).add(fn)
    return {k: frozenset(v) for k, v in found.items()}


def _flag_gems_dir() -> Path | None:
    spec = importlib.util.find_spec("flag_gems")
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def _version() -> str:
    for dist in ("flag_gems", "flag-gems"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    return "unknown"


def _commit(package: Path) -> str:
    """The git commit of a flag_gems imported from a source tree ("" for an installed wheel)."""
    if "site-packages" in package.parts or "dist-packages" in package.parts:
        return ""
    proc = subprocess.run(
        ["git", "-C", str(package), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else ""


def table_key(pairs: Pairs, package: Path) -> dict[str, str]:
    # the registered overloads, not the function names: those are read again at load (opinfo.py)
    digest = hashlib.sha256(json.dumps(sorted({k for k, _ in pairs})).encode()).hexdigest()[:16]
    return {
        "flag_gems": _version(),
        "commit": _commit(package),
        "registry": digest,
        "torch": str(torch.__version__),
        "format": str(FORMAT),
    }


def cache_dir() -> Path:
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "flagos-portability"
    return Path(root) / "opinfo"


def cache_path(key: dict[str, str]) -> Path:
    name = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / f"table-{key['flag_gems']}-{name}.json"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # fcntl rather than a lock-file package: POSIX is where the matrix runs, and nothing else is needed
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(path: Path, key: dict[str, str]) -> Table | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data["table"] if data.get("key") == key else None


def load_table(
    checked_in: dict[str, tuple[dict[str, str], Table]], derive: Callable[[Pairs], Table]
) -> Derived:
    """The table for the installed FlagGems and torch (see the module docstring). `checked_in`: module
    name -> (key, table) of the tables shipped in kernels/aten/; the first is the default."""
    default_name, (default_key, default_table) = next(iter(checked_in.items()))
    package = _flag_gems_dir()
    if package is None:
        return Derived(
            default_table, default_key, [], f"checked-in {default_name} (flag_gems is not installed)"
        )
    pairs = registry_pairs()
    key = table_key(pairs, package)
    for name, (shipped_key, table) in checked_in.items():
        if _same_table(shipped_key, key):
            return Derived(table, key, pairs, f"checked-in {name}")
    path = cache_path(key)
    table = _read(path, key)
    if table is not None:
        return Derived(table, key, pairs, f"cache {path}")
    with _locked(path.parent):
        table = _read(path, key)  # another process may have derived it while this one waited
        if table is not None:
            return Derived(table, key, pairs, f"cache {path}")
        start = time.perf_counter()
        table = derive(pairs)
        took = time.perf_counter() - start
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": key, "seconds": round(took, 1), "table": table}))
        tmp.replace(path)
    return Derived(table, key, pairs, f"derived in {took:.0f} s -> {path}")


def _same_table(shipped: dict[str, str], installed: dict[str, str]) -> bool:
    """A shipped table serves whatever registers the same overloads under the same torch and format:
    the version and commit only name where it came from."""
    return all(shipped.get(f) == installed[f] for f in ("registry", "torch", "format"))
