"""Merging per-machine run directories (shards) into one run directory, losing nothing: every shard's
rows, the union of their plans (so the scorecard and `diff` name the planned cases no shard ran, exactly
as for a run on one machine), their run metadata, FlagGems coverage, and a cell row for every expected
cell whose shard never arrived (its runner died or was cancelled before uploading): *not run*, never
silently absent."""

from __future__ import annotations

import shlex
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portability.plan.cells import Plan
from portability.results.rundir import RunDir
from portability.results.status import FAILING
from portability.results.store import ResultWriter, iter_results

# The packages whose versions must agree across shards for their results to be comparable.
COMPARED_VERSIONS = ("torch", "flag-gems", "triton")
NO_SHARD = "not run: no shard arrived from its job (runner lost, job cancelled or failed before uploading)"


@dataclass
class MergeReport:
    rows: int = 0
    duplicates: list[str] = field(default_factory=list)  # same case, same verdict, in several shards
    conflicts: list[dict[str, Any]] = field(default_factory=list)  # same case, different verdicts
    missing_cells: list[str] = field(default_factory=list)  # expected, but in no shard: not run
    without_plan: list[str] = field(default_factory=list)  # shards whose unrun cases cannot be named
    without_run_info: list[str] = field(default_factory=list)  # shards cut short before run.json
    versions: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # package -> version -> shards

    @property
    def version_mismatches(self) -> dict[str, dict[str, list[str]]]:
        return {pkg: by_version for pkg, by_version in self.versions.items() if len(by_version) > 1}


def merge(shards: list[Path], out: Path, expected_cells: list[str] | None = None) -> MergeReport:
    """Write one run directory from several. A case present in more than one shard is kept once if the
    shards agree (reported as a duplicate) and, if they disagree, kept as the *worse* verdict with the
    conflict reported: never silently dropped either way. `expected_cells` (backend@device ids, e.g. the
    CI matrix's) that no shard reports get a cell row saying they were not run."""
    report = MergeReport()
    chosen = _merge_rows(shards, report)
    for cell in expected_cells or []:
        if not any(r.get("cell") == cell for r in chosen.values()):
            report.missing_cells.append(cell)
            chosen[f"cell:{cell}"] = _not_run_cell_row(cell)
    merged = RunDir(out)
    merged.path.mkdir(parents=True, exist_ok=True)
    dirs = [RunDir.of(s) for s in shards]
    # the merged directory is a run of the union plan: its rows carry that plan's fingerprint
    fingerprint = _merge_plans(dirs, merged, report)
    merged.results.unlink(missing_ok=True)
    writer = ResultWriter(merged.results, plan=fingerprint)
    for row in chosen.values():
        writer.append(row)
    report.rows = len(chosen)
    _merge_run_info(dirs, merged, report)
    coverage_from = _copy_coverage(dirs, merged)
    merged.write_json(
        merged.merge_report,
        {
            "shards": [str(s) for s in shards],
            "rows": report.rows,
            "duplicates": report.duplicates,
            "conflicts": report.conflicts,
            "missing_cells": report.missing_cells,
            "shards_without_plan": report.without_plan,
            "shards_without_run_info": report.without_run_info,
            "version_mismatches": report.version_mismatches,
            "coverage_from": coverage_from,
        },
    )
    return report


def _results_path(shard: Path) -> Path:
    return RunDir(shard).results if shard.is_dir() else shard


def _merge_rows(shards: list[Path], report: MergeReport) -> dict[str, dict[str, Any]]:
    """The latest row of each case over all shards (and which shard ran which package versions)."""
    chosen: dict[str, dict[str, Any]] = {}
    source: dict[str, str] = {}
    versions: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for shard in shards:
        path = _results_path(shard)
        latest: dict[str, dict[str, Any]] = {}
        for row in iter_results(path) if path.exists() else []:
            latest[row["id"]] = row
            for pkg, version in (row.get("versions") or {}).items() if row.get("kind") == "cell" else ():
                if pkg in COMPARED_VERSIONS and version:
                    versions[pkg][version].add(str(shard))
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
    report.versions = {pkg: {v: sorted(s) for v, s in by.items()} for pkg, by in versions.items()}
    return chosen


def _not_run_cell_row(cell: str) -> dict[str, Any]:
    backend, _, device = cell.partition("@")
    return {
        "id": f"cell:{cell}",
        "kind": "cell",
        "cell": cell,
        "backend": backend,
        "device": device,
        "status": "infra",
        "reason": NO_SHARD,
        "not_run": True,
        "time": time.time(),
    }


def _merge_plans(shards: list[RunDir], out: RunDir, report: MergeReport) -> str | None:
    """Write the union of the shards' plan.json (cells and cases by id, the longest case time limit);
    returns its fingerprint (None: no shard had a plan)."""
    cells: dict[str, Any] = {}
    cases: dict[str, Any] = {}
    timeout_s, workers = 0.0, None
    for shard in shards:
        if not shard.plan.exists():
            report.without_plan.append(str(shard.path))
            continue
        plan = Plan.read(shard.plan)
        cells.update({c.id: c for c in plan.cells if c.id not in cells})
        cases.update({c.id: c for c in plan.cases if c.id not in cases})
        timeout_s, workers = max(timeout_s, plan.timeout_s), workers or plan.workers
    out.plan.unlink(missing_ok=True)
    if not cells and not cases:
        return None
    plan = Plan(list(cells.values()), list(cases.values()), timeout_s, workers or "auto")
    plan.write(out.plan)
    return plan.fingerprint()


def _merge_run_info(shards: list[RunDir], out: RunDir, report: MergeReport) -> None:
    """run.json of the merged directory: each shard's own (or that it has none: cut short), with the
    head fields a scorecard shows (hosts, platforms, the longest wall time: shards run side by side)."""
    infos: list[dict[str, Any]] = []
    for shard in shards:
        info = shard.read_json(shard.run_info)
        if info is None:
            report.without_run_info.append(str(shard.path))
        infos.append({"shard": str(shard.path), **(info or {"cut_short": True})})
    ran = [i for i in infos if not i.get("cut_short")]
    merged = {
        "command": "portability " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "portability merge",
        "host": ", ".join(dict.fromkeys(i["host"] for i in ran if i.get("host"))) or "?",
        "platform": ", ".join(dict.fromkeys(i["platform"] for i in ran if i.get("platform"))) or "?",
        "wall_s": max((i.get("wall_s") or 0 for i in ran), default=None),
        "started": min((i["started"] for i in ran if i.get("started")), default=None),
        "finished": max((i["finished"] for i in ran if i.get("finished")), default=None),
        "shards": infos,
    }
    out.write_json(out.run_info, merged)


def _copy_coverage(shards: list[RunDir], out: RunDir) -> str | None:
    """The first shard's coverage.json (FlagGems' registry and what the catalog exercises of it)."""
    out.coverage.unlink(missing_ok=True)
    for shard in shards:
        coverage = shard.read_json(shard.coverage)
        if coverage is not None:
            out.write_json(out.coverage, coverage)
            return str(shard.path)
    return None
