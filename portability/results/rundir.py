"""A run directory (`portability run --out DIR`): the one place that names its files.

    results.jsonl     one row per finished case (results/store.py)
    plan.json         every planned case, so a scorecard can name what never ran
    cells.plan.json   what the pytest sessions run (on --resume: only what is left)
    run.json          host, versions, command, timings of the run
    coverage.json     which FlagGems-registered overloads the catalog exercised
    merge.json        (merged runs) the shards, duplicates and conflicts
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
    def coverage(self) -> Path:
        return self.path / "coverage.json"

    @property
    def merge_report(self) -> Path:
        return self.path / "merge.json"

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

    def read_json(self, path: Path) -> Any | None:
        """The JSON document at `path` (one of this directory's files), or None when it does not exist."""
        return json.loads(path.read_text()) if path.exists() else None

    def write_json(self, path: Path, data: Any, indent: int | None = 1) -> None:
        """Replace `path` atomically: a reader (or a crash) never sees half a file."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=indent))
        os.replace(tmp, path)
