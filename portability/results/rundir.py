"""A run directory (`portability run --out DIR`): the one place that names its files.

    results.jsonl     one row per finished case (results/store.py)
    plan.json         every planned case, so a scorecard can name what never ran
    cells.plan.json   what the pytest sessions run (on --resume: only what is left)
    run.json          host, versions, command, timings of the run (wall time, the part spent timing, peaks)
    peaks.json        the measured peaks of each cell's device (portability/perf/peaks.py)
    coverage.json     which FlagGems-registered overloads the catalog exercised
    declared-support.json   what each FlagGems vendor backend declares (turned-off operators, dtypes)
    merge.json        (merged runs) the shards, duplicates and conflicts
    run.lock          held by the live run: its pid and generation (results/lock.py)
    scorecard.md / scorecard.json / junit.xml / report.html   the outputs
    logs/             per-worker logs and in-flight markers
    reruns/CELL.N/    a run directory of its own for the N-th re-run of a cell's failing cases

Code elsewhere asks a `RunDir` for a path instead of spelling a file name.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TREND_FILE = "trend.jsonl"  # beside the run directories (one line per run), not inside one


class RunFileError(ValueError):
    """A file of a run directory that cannot be read as what it should be (reported in one line, exit 2)."""


@dataclass(frozen=True)
class RunDir:
    path: Path

    @classmethod
    def of(cls, path: Path | str) -> RunDir:
        """The run directory of `path`: the directory itself, or the one holding a results file."""
        path = Path(path)
        return cls(path.parent if path.suffix == ".jsonl" else path)

    @property
    def results(self) -> Path:
        return self.path / "results.jsonl"

    @property
    def plan(self) -> Path:
        return self.path / "plan.json"

    @property
    def cells_plan(self) -> Path:
        return self.path / "cells.plan.json"

    @property
    def run_info(self) -> Path:
        return self.path / "run.json"

    @property
    def peaks(self) -> Path:
        return self.path / "peaks.json"

    @property
    def coverage(self) -> Path:
        return self.path / "coverage.json"

    @property
    def declared_support(self) -> Path:
        return self.path / "declared-support.json"

    @property
    def merge_report(self) -> Path:
        return self.path / "merge.json"

    @property
    def lock(self) -> Path:
        return self.path / "run.lock"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def rerun(self, cell: str, attempt: int) -> RunDir:
        """The run directory of a cell's re-run of its failing cases (attempt 2, 3...)."""
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in cell)
        return RunDir(self.path / "reruns" / f"{safe}.{attempt}")

    @property
    def default_trend(self) -> Path:
        return self.path.resolve().parent / TREND_FILE

    def outputs(self, out: Path | None = None) -> dict[str, Path]:
        """Where the scorecard files go: into `out`, or into the run directory itself."""
        base = Path(out) if out else self.path
        return {
            "markdown": base / "scorecard.md",
            "json": base / "scorecard.json",
            "junit": base / "junit.xml",
        }

    def report_html(self) -> Path:
        return self.path / "report.html"

    def read_json(self, path: Path) -> dict[str, Any] | None:
        """The JSON object at `path` (one of this directory's files), or None when it does not exist.
        A file that is not a JSON object (bad UTF-8, NUL bytes, a torn or foreign file) is refused with
        RunFileError: one line naming the file and the line, never a traceback."""
        if not path.exists():
            return None
        if path.is_dir():
            raise RunFileError(f"{path}: is a directory, expected a JSON file")
        raw = path.read_bytes()
        try:
            data = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise RunFileError(f"{path}:{line}: not valid UTF-8, expected a JSON object") from None
        except json.JSONDecodeError as exc:
            why = f"not valid JSON ({exc.msg}), expected a JSON object"
            raise RunFileError(f"{path}:{exc.lineno}: {why}") from None
        if not isinstance(data, dict):
            raise RunFileError(f"{path}:1: a JSON {type(data).__name__}, expected a JSON object")
        return data

    def write_json(self, path: Path, data: Any, indent: int | None = 1) -> None:
        """Replace `path` atomically: a reader (or a crash) never sees half a file."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=indent))
        os.replace(tmp, path)
