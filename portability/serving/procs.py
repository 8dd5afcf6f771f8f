"""Subprocesses of the serving runs: each in a new process group (killed as a group, so vLLM's
EngineCore and workers go with it), with the parent-death signal set so that even a runner killed by
SIGKILL takes its direct children along. Nothing is left running, on success, error or timeout."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1


class RunFailed(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _child_setup() -> None:  # runs in the child between fork and exec
    os.setsid()
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def make_env(extra: dict[str, Any]) -> dict[str, str]:
    """os.environ + `extra`; a None value unsets, PYTHONPATH is prepended (the project stays importable)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in (extra.get("PYTHONPATH"), root, env.get("PYTHONPATH")) if p]
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        elif key != "PYTHONPATH":
            env[key] = str(value)
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        fh.write(f"\n$ {' '.join(cmd)}\n".encode())
        fh.flush()
        return subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, preexec_fn=_child_setup)


def kill_group(proc: subprocess.Popen, grace_s: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left of it (the group outlives its leader)."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(proc.pid):
            time.sleep(0.1)
            proc.poll()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tail(log: Path, n: int = 6) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()][-n:]
    return " | ".join(ln.strip()[-300:] for ln in lines)


# vLLM's front end reports an engine failure as a wrapper ("Engine core initialization failed. See root
# cause above.", EngineDeadError "... See stack trace (above) for the root cause."); the cause is in the
# EngineCore process's output, which goes to the run's log.
_WRAPPER = re.compile(r"root cause|See stack trace|Traceback")
_ERROR_LINE = re.compile(r"(?:^|[\s\]])((?:[A-Za-z_][\w.]*)?(?:Error|Exception): \S.*)$")


def root_cause(log: Path, since: int = 0) -> str | None:
    """The last error line that is not a wrapper in the part of `log` from byte `since` (one run's)."""
    if not log.exists():
        return None
    with log.open("rb") as fh:
        fh.seek(since)
        text = fh.read().decode(errors="replace")
    cause = None
    for line in text.replace("\r", "\n").splitlines():
        m = _ERROR_LINE.search(line.strip())
        if m and not _WRAPPER.search(m.group(1)):
            cause = m.group(1)
    return cause[:400] if cause else None


def run_worker(spec: dict[str, Any], env_extra: dict[str, Any], timeout: float, log: Path) -> dict[str, Any]:
    """Run one worker to completion; its result dict, or RunFailed(status, reason)."""
    with tempfile.TemporaryDirectory(prefix="serving-") as tmp:
        spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        marker = Path(tmp) / "flaggems.marker"
        spec_file.write_text(json.dumps(spec))
        env = make_env({**env_extra, "PORTABILITY_FLAGGEMS_MARKER": str(marker)})
        cmd = [sys.executable, "-m", "portability.serving.worker", str(spec_file), str(result_file)]
        since = log.stat().st_size if log.exists() else 0
        proc = spawn(cmd, env, log)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RunFailed("timeout", f"{spec['mode']} run gave no result in {timeout:.0f}s") from None
        finally:
            kill_group(proc)
        if not result_file.exists():
            status = "crash" if code is not None and code < 0 else "error"
            raise RunFailed(status, f"{spec['mode']} run exited with {code}: {_tail(log)}")
        result = json.loads(result_file.read_text())
        if "error" in result:
            reason = f"{spec['mode']} run failed: {result['error']}"
            cause = root_cause(log, since) if _WRAPPER.search(result["error"]) else None
            if cause and cause not in reason:
                reason += f" (root cause in the engine log: {cause})"
            raise RunFailed("error", reason)
        return result


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def openai_server(
    cmd: list[str], env_extra: dict[str, Any], port: int, timeout: float, log: Path
) -> Iterator[float]:
    """Start a server on 127.0.0.1:port, wait for /health; yields its start-up seconds; always stopped."""
    t0 = time.perf_counter()
    proc = spawn(cmd, make_env(env_extra), log)
    try:
        url = f"http://127.0.0.1:{port}/health"
        while True:
            if proc.poll() is not None:
                raise RunFailed(
                    "error", f"OpenAI server exited with {proc.returncode} while starting: {_tail(log)}"
                )
            if time.perf_counter() - t0 > timeout:
                raise RunFailed("timeout", f"OpenAI server not healthy after {timeout:.0f}s")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        yield time.perf_counter() - t0
    finally:
        kill_group(proc)
