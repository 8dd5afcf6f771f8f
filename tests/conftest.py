from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """The real command line, in a subprocess, as a user would run it."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "portability", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli():
    return run_cli


def flag_gems_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("flag_gems") is not None


def shared_wheel(pattern: str) -> Path | None:
    """A wheel of the `shared/wheels/` folder beside the checkout (or beside a folder above it, for
    worktrees): wheels the package registry does not have, e.g. FlagGems 5.3.4."""
    for folder in ROOT.parents:
        found = sorted((folder / "shared" / "wheels").glob(pattern))
        if found:
            return found[-1]
    return None


@pytest.fixture(scope="session")
def flag_gems_534(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding flag-gems 5.3.4, installed from the shared wheel without its dependencies (put it
    first on PYTHONPATH: it then shadows the 5.0.2 of the test environment)."""
    wheel = shared_wheel("flag_gems-5.3.4-*.whl")
    if wheel is None:
        pytest.skip("no flag_gems-5.3.4 wheel in ../shared/wheels (FlagGems 5.3.4 is not on PyPI)")
    target = tmp_path_factory.mktemp("flag_gems_534")
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target", str(target)]
    subprocess.run([*cmd, str(wheel)], check=True, capture_output=True, timeout=300)
    return target


def with_path(*folders: Path) -> dict[str, str]:
    """The environment that puts `folders` (then the checkout) first on the import path."""
    return {"PYTHONPATH": os.pathsep.join([*map(str, folders), str(ROOT)])}
