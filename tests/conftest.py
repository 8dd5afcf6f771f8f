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


def flag_gems_5_3_4_wheel() -> Path | None:
    """The FlagGems 5.3.4 wheel the project shares beside its checkouts (../shared/wheels/), if present."""
    for base in (ROOT, *list(ROOT.parents)[:2]):
        found = sorted((base / "shared" / "wheels").glob("flag_gems-5.3.4-*.whl"))
        if found:
            return found[0]
    return None


@pytest.fixture(scope="session")
def flag_gems_5_3_4(tmp_path_factory) -> Path:
    """FlagGems 5.3.4's package folder (flag_gems/), unpacked from the shared wheel; its parent folder
    goes first on a subprocess's PYTHONPATH to run against it. Skips when the wheel is absent."""
    import zipfile

    wheel = flag_gems_5_3_4_wheel()
    if wheel is None:
        pytest.skip("no flag_gems-5.3.4 wheel in ../shared/wheels/ (see ../shared/wheels/README.md)")
    target = tmp_path_factory.mktemp("flag_gems_5_3_4")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    return target / "flag_gems"


def flag_gems_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("flag_gems") is not None
