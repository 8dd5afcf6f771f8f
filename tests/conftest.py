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


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """The real command line, started in the background in its own session (signals reach it alone)."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "portability", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for(condition, timeout: float = 120, what: str = "condition") -> None:
    """Poll `condition()` every 0.1 s until it is true; fail the test after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


def processes_with_env(key: str, value: str) -> list[int]:
    """Live processes whose environment holds key=value (Linux /proc; zombies are not live)."""
    needle = f"{key}={value}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0"):
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(proc.name))
        except OSError:
            continue
    return found


def one_line_error(stderr: str) -> str:
    """The single `portability: ...` error line of a failed command; fails on a traceback or noise."""
    assert "Traceback" not in stderr and "INTERNALERROR" not in stderr, stderr[-3000:]
    errors = [ln for ln in stderr.splitlines() if ln.startswith("portability: ")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]
