"""Result rows: one JSON object per finished case, appended to `results.jsonl` the moment it finishes.

Every row carries `id` (unique per case in a run), `kind` ("op", "cell" or "serving"), `cell`
("backend@device"), `status` (one of STATUSES) and `reason` (why, for anything but pass); rows of a
`portability run` also carry `plan`, the fingerprint of the plan they belong to. A row is appended whole
or not at all: one line under an exclusive lock, short writes continued, fsync'ed, and on any failure
(out of space, read-only) the file is cut back to where the row began and `ResultsUnwritable` raised.

Reading is validated like matrix.yaml: a line that is not a row (bad UTF-8, NUL bytes, not a JSON object,
a missing or mistyped field, a row of another plan) is skipped and counted, and the count is said once on
stderr with the first lines' `file:line: why`; a last line without its newline (a writer killed mid-row)
is left out silently.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from portability.results.lock import locked, read_lock
from portability.results.rundir import RunDir
from portability.results.status import STATUSES

KINDS = ("op", "cell", "serving")


class ResultsUnwritable(Exception):
    """A row could not be written (out of space, read-only, file too large): the run must stop."""


class StaleRun(Exception):
    """A writer of a run that is no longer the live one of its directory (see results/lock.py)."""


class ResultWriter:
    """Appends rows to a JSON-lines file; safe across processes. With `generation`, rows are appended only
    while that generation holds the directory's lock file; with `plan`, each row is stamped with it."""

    def __init__(self, path: Path, generation: str | None = None, plan: str | None = None) -> None:
        self.path = Path(path)
        self.generation = generation
        self.plan = plan
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, row: dict[str, Any]) -> None:
        if row.get("status") not in STATUSES:
            raise ValueError(f"status {row.get('status')!r} is not one of {STATUSES}")
        if self.plan:
            row = {**row, "plan": self.plan}
        line = (json.dumps(row, sort_keys=True, default=str, allow_nan=True) + "\n").encode()
        try:
            with locked(self.path) as fd:
                self._check_live()
                start = cut_torn_tail(fd)
                try:
                    _write_all(fd, line)
                    os.fsync(fd)
                except BaseException:  # a failed write, or an interrupt between two parts of a short one
                    try:
                        os.ftruncate(fd, start)  # the row whole or not at all
                    except OSError:
                        pass  # cut_torn_tail drops the partial line before the next append
                    raise
        except OSError as exc:
            raise ResultsUnwritable(f"{self.path}: a result row could not be written: {_why(exc)}") from None

    def _check_live(self) -> None:
        if self.generation is None:
            return
        live = read_lock(RunDir.of(self.path)).get("generation")
        if live != self.generation:
            raise StaleRun(f"{self.path}: this run ({self.generation[:8]}) no longer holds the directory")


def _write_all(fd: int, data: bytes) -> None:
    """os.write until every byte is down (a write to a nearly full disk can be short)."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def cut_torn_tail(fd: int) -> int:
    """Cut the file back to its last complete line (a writer killed mid-row leaves a line without its
    newline; appending after it would glue the next row onto it). Returns the new size."""
    size = os.fstat(fd).st_size
    if size == 0 or os.pread(fd, 1, size - 1) == b"\n":
        return size  # the usual case: one byte read
    end = size
    while end > 0:
        start = max(0, end - 65536)
        block = os.pread(fd, end - start, start)
        newline = block.rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end < size:
        os.ftruncate(fd, end)
    return end


def _why(exc: OSError) -> str:
    hint = {errno.ENOSPC: "out of space", errno.EDQUOT: "over quota", errno.EROFS: "read-only"}
    return f"{exc.strerror or exc}" + (f" ({hint[exc.errno]})" if exc.errno in hint else "")


def read_results(path: Path, plan: str | None = None) -> list[dict[str, Any]]:
    """All valid rows of a results file (or run directory); bad lines are skipped and said once."""
    return list(iter_results(path, plan))


def iter_results(path: Path, plan: str | None = None, quiet: bool = False) -> Iterator[dict[str, Any]]:
    """The valid rows of a results file. A row stamped with another plan than `plan` (by default the
    fingerprint in the run directory's plan.json, if any) is skipped."""
    path = Path(path)
    if path.is_dir():
        path = RunDir(path).results
    if not path.exists():
        return
    if plan is None:
        plan = _directory_plan(RunDir.of(path))
    skipped: list[str] = []
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.endswith(b"\n"):
                break  # torn write of a process killed mid-line
            row, why = parse_row(raw, plan)
            if row is not None:
                yield row
            elif why:
                skipped.append(f"{path}:{number}: {why}")
    if skipped and not quiet:
        warn_skipped(path, skipped)


def _directory_plan(run_dir: RunDir) -> str | None:
    found = (run_dir.read_json(run_dir.plan) or {}).get("fingerprint")
    return found if isinstance(found, str) else None


_WARNED: set[tuple[str, int]] = set()


def warn_skipped(path: Path, skipped: list[str]) -> None:
    """One line on stderr per file (once per process): how many rows were skipped, and the first few."""
    key = (str(path), len(skipped))
    if key in _WARNED:
        return
    _WARNED.add(key)
    shown = "; ".join(skipped[:3]) + (f"; … {len(skipped) - 3} more" if len(skipped) > 3 else "")
    sys.stderr.write(f"portability: skipped {len(skipped)} bad row(s) of {path}: {shown}\n")


# Fields other code reads, with their types (absent is always fine). Written out rather than a JSON
# Schema: jsonschema is not a dependency, and vendor lab boxes often have no package registry.
_TEXT_FIELDS = ("op", "case", "dtype", "backend", "device", "device_name", "engine", "model", "worker")
_NUMBER_SUFFIXES = ("_ms", "_s", "_err", "_tok_s")
_NUMBER_FIELDS = ("speedup", "gbps", "tflops", "time", "atol", "rtol")


def parse_row(raw: bytes, plan: str | None = None) -> tuple[dict[str, Any] | None, str]:
    """(row, "") for a valid line, (None, why) for a bad one, (None, "") for a blank line."""
    if not raw.strip():
        return None, ""
    if b"\0" in raw:
        return None, "NUL byte in the line"
    try:
        row = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "not valid UTF-8"
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg})"
    except RecursionError:
        return None, "nested too deeply to be a row"
    if not isinstance(row, dict):
        return None, f"a JSON {type(row).__name__}, expected an object"
    why = _field_problem(row)
    if not why and plan and row.get("plan") not in (None, plan):
        why = f"a row of another plan ({str(row['plan'])[:12]}, this run's is {plan[:12]})"
    return (None, why) if why else (row, "")


def _field_problem(row: dict[str, Any]) -> str:
    for name in ("id", "cell"):
        if not isinstance(row.get(name), str) or not row[name]:
            return f"'{name}' missing or not a string"
    if row.get("status") not in STATUSES:
        return f"'status' {str(row.get('status'))[:40]!r} is not one of {', '.join(STATUSES)}"
    if row.get("kind") not in KINDS:
        return f"'kind' {str(row.get('kind'))[:40]!r} is not one of {', '.join(KINDS)}"
    if row["kind"] == "op" and not all(isinstance(row.get(k), str) for k in ("op", "case", "dtype")):
        return "an op row needs 'op', 'case' and 'dtype' strings"
    for key, value in row.items():
        if value is None:
            continue
        if key in _TEXT_FIELDS or key == "reason":
            ok = isinstance(value, str)
        elif key in _NUMBER_FIELDS or key.endswith(_NUMBER_SUFFIXES):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        elif key == "versions":
            ok = isinstance(value, dict)
        else:
            continue
        if not ok:
            return f"'{key}' is a {type(value).__name__}"
    return ""


def latest_by_id(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """One row per case id, the last written winning (a resumed run may re-run a crashed case)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        out[row["id"]] = row
    return out


def planned_cases(plan: dict[str, Any] | None, path: Path) -> tuple[list[dict[str, Any]] | None, str | None]:
    """(the cases of a plan.json document, its fingerprint): entries that are not a case (an object with
    string 'id', 'cell' and 'op') are skipped and said once; (None, None) without a plan."""
    if plan is None:
        return None, None
    cases = plan.get("cases")
    if not isinstance(cases, list):
        warn_skipped(path, [f"{path}: 'cases' is not a list: no planned case is known"])
        return None, None
    good, skipped = [], []
    for number, case in enumerate(cases, 1):
        if isinstance(case, dict) and all(isinstance(case.get(k), str) for k in ("id", "cell", "op")):
            good.append(case)
        else:
            skipped.append(f"{path}: case {number}: not an object with string 'id', 'cell' and 'op'")
    if skipped:
        warn_skipped(path, skipped)
    fingerprint = plan.get("fingerprint")
    return good, fingerprint if isinstance(fingerprint, str) else None


def planned_cells(plan: dict[str, Any] | None) -> set[str] | None:
    """The backend@device cells a plan.json document names (entries that are not a cell are left out;
    None without a plan or without a list of cells)."""
    cells = (plan or {}).get("cells")
    if not isinstance(cells, list):
        return None
    return {
        f"{c['backend']}@{c['device']}"
        for c in cells
        if isinstance(c, dict) and isinstance(c.get("backend"), str) and isinstance(c.get("device"), str)
    }
