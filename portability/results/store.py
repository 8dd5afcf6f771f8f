"""Result rows: one JSON object per finished case, appended to `results.jsonl` the moment it finishes.

Every row carries `id` (unique per case in a run), `kind` ("op", "cell" or "serving"), `cell`
("backend@device"), `status` (one of STATUSES) and `reason` (why, for anything but pass). Appends are
single `write()` calls of one line under an exclusive lock, flushed and fsync'ed, so parallel workers
never interleave and a `kill -9` loses at most the case that was running.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from portability.results.rundir import RunDir
from portability.results.status import STATUSES


class ResultWriter:
    """Appends rows to a JSON-lines file; safe across processes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, row: dict[str, Any]) -> None:
        if row.get("status") not in STATUSES:
            raise ValueError(f"status {row.get('status')!r} is not one of {STATUSES}")
        line = (json.dumps(row, sort_keys=True, default=str, allow_nan=True) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, line)
            os.fsync(fd)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def read_results(path: Path) -> list[dict[str, Any]]:
    """All complete rows of a results file (a torn last line from a killed writer is ignored)."""
    return list(iter_results(path))


def iter_results(path: Path) -> Iterator[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        path = RunDir(path).results
    if not path.exists():
        return
    with path.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break  # torn write of a process killed mid-line
            try:
                yield json.loads(raw)
            except json.JSONDecodeError:
                continue


def latest_by_id(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One row per case id, the last written winning (a resumed run may re-run a crashed case)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        out[row["id"]] = row
    return out
