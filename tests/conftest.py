from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

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


def run_cut_short(args: list[str], out: Path, op_rows: int, env: dict[str, str] | None = None) -> None:
    """A real run cut short, as a CI time limit or a lost runner leaves it: `portability run ARGS --out
    OUT` started as a user would, then its whole process group (orchestrator, pytest, workers) killed
    with SIGKILL once `op_rows` operator rows are on disk. The caller checks that cases remained."""
    from portability.results.rundir import RunDir

    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [sys.executable, "-m", "portability", "run", *args, "--out", str(out)]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None and _op_rows(RunDir(out).results) < op_rows:
            time.sleep(0.1)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _op_rows(results: Path) -> int:
    if not results.exists():
        return 0
    return sum(1 for line in results.read_text().splitlines() if '"kind": "op"' in line)


def write_run_dir(
    out: Path,
    rows: list[dict[str, Any]],
    planned: list[dict[str, Any]] | None = None,
    coverage: dict[str, Any] | None = None,
) -> Path:
    """A run directory as `portability run` leaves it: results.jsonl, plan.json (when `planned`),
    coverage.json (when given)."""
    from portability.results.rundir import RunDir
    from portability.results.store import ResultWriter

    run_dir = RunDir(out)
    writer = ResultWriter(run_dir.results)
    for row in rows:
        writer.append(row)
    if planned is not None:
        run_dir.write_json(run_dir.plan, {"cells": [], "cases": planned, "timeout_s": 300, "workers": 1})
    if coverage is not None:
        run_dir.write_json(run_dir.coverage, coverage)
    return out


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
