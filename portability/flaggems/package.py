"""The importable flag_gems package on disk, located and parsed without importing it."""

from __future__ import annotations

import ast
import functools
import importlib.util
from pathlib import Path


class FlagGemsUnavailable(Exception):
    """The installed FlagGems (or its absence) cannot provide what the matrix needs; the message says why."""


def package_dir() -> Path:
    """The folder of the flag_gems package Python would import (PYTHONPATH and stand-ins included)."""
    try:
        spec = importlib.util.find_spec("flag_gems")
    except (ImportError, ValueError) as exc:
        raise FlagGemsUnavailable(f"flag_gems cannot be located ({exc})") from exc
    if spec is None or not spec.submodule_search_locations:
        raise FlagGemsUnavailable("flag_gems is not installed")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


@functools.lru_cache(maxsize=64)
def _parse(path: Path, mtime_ns: int) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def parse(path: Path) -> ast.Module:
    """The syntax tree of one of the package's Python files (cached while the file is unchanged)."""
    return _parse(path, path.stat().st_mtime_ns)
