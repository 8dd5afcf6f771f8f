"""The lock of a run directory: one live run at a time, and rows only from the live run.

`portability run` holds `run.lock` (an exclusive `flock`, so the kernel releases it when the holder dies,
even by `kill -9`: a dead owner's lock is stale by construction). The file names the owner's pid and the
run's *generation*, a fresh token per `portability run` (a `--resume` is a new generation). Every process
of the run gets the generation in its environment; a writer that carries a generation appends only while
it is still the live one, so a worker orphaned by an earlier, killed run can never add rows behind a
`--resume` (which would duplicate them).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
import uuid
from pathlib import Path

from portability.results.rundir import RunDir

GENERATION_ENV = "PORTABILITY_RUN_GENERATION"
PLAN_ENV = "PORTABILITY_PLAN"  # the plan fingerprint every row of the run is stamped with


class RunDirBusy(Exception):
    """Another live run holds the directory."""


class RunLock:
    """Held for the whole of one `portability run`; `release()` (or the owner's death) lets go."""

    def __init__(self, run_dir: RunDir, fd: int, generation: str) -> None:
        self.run_dir, self._fd, self.generation = run_dir, fd, generation

    @classmethod
    def acquire(cls, out: Path) -> RunLock:
        run_dir = RunDir(Path(out))
        run_dir.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(run_dir.lock, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by subprocesses
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = read_lock(run_dir)
            os.close(fd)
            since = time.strftime("%H:%M:%S", time.localtime(owner.get("started", 0)))
            raise RunDirBusy(
                f"{run_dir.path} is in use by a live run (pid {owner.get('pid', '?')}, started {since}): "
                "wait for it to end, stop it, or choose another --out"
            ) from None
        lock = cls(run_dir, fd, uuid.uuid4().hex)
        content = json.dumps({"pid": os.getpid(), "generation": lock.generation, "started": time.time()})
        # Written under the results file's lock: a writer of an older generation that checks the live
        # generation under that same lock sees either the old one (and its row lands before we read the
        # results) or this one (and is refused): never a row after the resumed run has read what is done.
        with locked(run_dir.results):
            os.ftruncate(fd, 0)
            os.pwrite(fd, content.encode(), 0)
            os.fsync(fd)
        return lock

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def read_lock(run_dir: RunDir) -> dict:
    """The lock file's content ({} when it is absent, empty or unreadable: it is only ever informative
    or compared against)."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(run_dir.lock.read_bytes() or b"{}")
        return data if isinstance(data, dict) else {}
    return {}


@contextlib.contextmanager
def locked(path: Path):
    """An exclusive flock on `path` (created if missing), yielding its file descriptor."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield fd
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
