"""Many machines: the cell list for a CI matrix, and merging per-machine run directories into one."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portability.matrix.config import MatrixConfig
from portability.results.rundir import RunDir
from portability.results.store import ResultWriter, iter_results


def ci_matrix(config: MatrixConfig) -> dict[str, list[dict[str, str]]]:
    """`{"include": [{"cell", "backend", "device", "runner"}...]}` for GitHub Actions' `fromJson`.
    `runner` is the self-hosted runner label a job for that cell should run on (the device type)."""
    include = []
    for backend in config.backends.values():
        for device in backend.devices:
            device_type = device.split(":", 1)[0]
            include.append(
                {
                    "cell": f"{backend.name}@{device}",
                    "backend": backend.name,
                    "device": device,
                    "runner": "ubuntu-latest" if device_type == "cpu" else f"portability-{device_type}",
                }
            )
    return {"include": include}


@dataclass
class MergeReport:
    rows: int = 0
    duplicates: list[str] = field(default_factory=list)  # same case, same verdict, in several shards
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # same case, different verdicts


def merge(shards: list[Path], out: Path) -> MergeReport:
    """Write one results.jsonl from several run directories. A case present in more than one shard is
    kept once if the shards agree (reported as a duplicate) and, if they disagree, kept as the *worse*
    verdict with the conflict reported: never silently dropped either way."""
    from portability.results.status import FAILING

    chosen: dict[str, dict[str, Any]] = {}
    source: dict[str, str] = {}
    report = MergeReport()
    for shard in shards:
        path = RunDir(shard).results if shard.is_dir() else shard
        if not path.exists():
            raise FileNotFoundError(f"{shard}: no {RunDir(shard).results.name}")
        latest: dict[str, dict[str, Any]] = {}
        for row in iter_results(path):
            latest[row["id"]] = row
        for case_id, row in latest.items():
            if case_id not in chosen:
                chosen[case_id], source[case_id] = row, str(shard)
                continue
            before = chosen[case_id]
            if row["status"] == before["status"]:
                if row.get("kind") != "cell":  # the same cell row from two machines is expected
                    report.duplicates.append(case_id)
                continue
            report.conflicts.append(
                {"id": case_id, source[case_id]: before["status"], str(shard): row["status"]}
            )
            if row["status"] in FAILING and before["status"] not in FAILING:
                chosen[case_id], source[case_id] = row, str(shard)
    out.mkdir(parents=True, exist_ok=True)
    RunDir(out).results.unlink(missing_ok=True)
    writer = ResultWriter(RunDir(out).results)
    for row in chosen.values():
        writer.append(row)
    report.rows = len(chosen)
    RunDir(out).merge_report.write_text(
        json.dumps(
            {
                "shards": [str(s) for s in shards],
                "rows": report.rows,
                "duplicates": report.duplicates,
                "conflicts": report.conflicts,
            },
            indent=1,
        )
    )
    return report
