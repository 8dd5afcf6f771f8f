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


def serving_process_pids(cache: Path) -> set[int]:
    """Serving processes (workers, vLLM engine cores, OpenAI servers) started by one test: the ones whose
    environment carries that test's PORTABILITY_CACHE (tests run side by side under pytest-xdist)."""
    mine = f"PORTABILITY_CACHE={cache}".encode()
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            serving = b"EngineCore" in cmd or b"portability.serving.worker" in cmd or b"api_server" in cmd
            if serving and mine in environ:
                pids.add(int(proc.name))
    return pids


def serving_settings(block: dict):
    """The `serving:` block checked as matrix.yaml's is, for tests that build settings directly (a
    mistake in the block fails the test with its path and message)."""
    from portability.serving.settings import validate_serving

    def error(path: tuple, what: str, expected: str):
        raise AssertionError((path, what, expected))

    return validate_serving(block, error)
