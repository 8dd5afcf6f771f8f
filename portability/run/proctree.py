"""The runner owns its process tree: every pytest session it starts, and that session's xdist workers,
end when the runner ends, however it ends (SIGTERM, SIGINT, SIGHUP, or `kill -9`, which no handler sees).

- The runner starts each pytest session in a new process group (`killpg` reaches the session and its
  workers at once) with the parent-death signal set (Linux `prctl(PR_SET_PDEATHSIG)`): a runner killed by
  SIGKILL takes the session along.
- Each xdist worker sets the parent-death signal for itself (it is not inherited across fork) and, where
  prctl is missing or the session died before the signal was set, a watchdog thread ends the worker once
  its parent is gone.
- SIGTERM, SIGINT and SIGHUP in the runner raise `RunInterrupted`, so the runner stops its sessions,
  keeps every row already written and still writes the scorecard (with an interrupted verdict).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
SESSION_PID_ENV = "PORTABILITY_SESSION_PID"


class RunInterrupted(BaseException):
    """A stop signal reached the runner. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way (adapter probing, serving steps) swallows it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)


def _raise_interrupted(signum: int, frame: object) -> None:
    raise RunInterrupted(signum)


@contextlib.contextmanager
def stop_signals_raise() -> Iterator[None]:
    """Within the block, SIGTERM / SIGINT / SIGHUP raise RunInterrupted in the main thread."""
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def die_with_parent(sig: int = signal.SIGKILL) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux); False where not."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig) == 0
    except (OSError, AttributeError):
        return False


def _session_setup() -> None:  # in the pytest session's process, between fork and exec
    die_with_parent()


def start_session(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    """Start a pytest session in its own process group, dying with this process; its stdout is a pipe
    (the caller copies it to the log: a full disk must not make pytest itself fail)."""
    # argv list, never a shell: no text from matrix.yaml is ever interpreted by a shell.
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=None, start_new_session=True, preexec_fn=_session_setup
    )


def stop_session(proc: subprocess.Popen, grace_s: float = 3.0) -> None:
    """SIGTERM the session's process group, SIGKILL what is left after `grace_s`, reap the leader."""
    for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(proc.pid):
            proc.poll()
            time.sleep(0.05)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def watch_parent(expected_parent: int | None) -> None:
    """In an xdist worker: end this process when the pytest session that started it is gone."""
    die_with_parent()
    parent = expected_parent or os.getppid()

    def gone() -> bool:
        return os.getppid() != parent

    if gone():  # the session died before the parent-death signal was set
        os._exit(1)

    def watchdog() -> None:
        while not gone():
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watchdog, name="portability-parent-watchdog", daemon=True).start()
