"""Scorecard data from result rows (the latest row of each case): the per-cell summary (counts, operators
passing, geomean speedup vs native, cases planned but not run), the operator × cell grid with one verdict
per entry, the failure list (flagged where native PyTorch fails too) and the serving rows."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any

from portability.perf.figures import cell_figures
from portability.results.status import FAILING, verdict
from portability.results.store import latest_by_id
from portability.scorecard import native_fails as native_check

# Cases whose inputs are smaller than this are left out of speedup statistics: an empty or tiny case times
# the launch and the Python call, not the kernel (an empty tensor once counted as "faster than native").
MIN_SPEEDUP_INPUT_BYTES = 4096


def _timed_work(r: dict[str, Any]) -> float | None:
    """The row's speedup if it may enter speedup statistics: a pass whose inputs are at least
    MIN_SPEEDUP_INPUT_BYTES (rows from before `input_bytes` was recorded count as before)."""
    if r["status"] != "pass" or not r.get("speedup"):
        return None
    size = r.get("input_bytes")
    return r["speedup"] if size is None or size >= MIN_SPEEDUP_INPUT_BYTES else None


def _own_code_coverage(rs: list[dict[str, Any]]) -> dict[str, int] | None:
    """Operators the adapter declares as its own (`implements` True) and how many of them had a case whose
    call reached its code (any status but fallback and the not-run ones); None if it declares none."""
    declared = {r["op"] for r in rs if r.get("implements") is True}
    if not declared:
        return None
    reached = {
        r["op"]
        for r in rs
        if r["op"] in declared and r.get("routing") in ("launches", "declared") and r["status"] != "fallback"
    }
    return {"declared": len(declared), "exercised": len(reached)}


def _geomean(values: list[float]) -> float | None:
    vals = [v for v in values if v and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def summarize(rows: list[dict[str, Any]], planned: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per-cell summary, operator × cell grid and failure list, from the latest row of each case.

    `planned` (the run's plan.json cases) lets the scorecard name cases that were planned but never ran
    (a run cut short by a time limit), instead of silently showing a smaller matrix."""
    latest = list(latest_by_id(rows).values())
    have = {r["id"] for r in latest}
    missing = [c for c in (planned or []) if c["id"] not in have]
    not_run: dict[str, Counter[str]] = defaultdict(Counter)
    for c in missing:
        not_run[c["cell"]][c["op"]] += 1
    cells = {r["cell"]: r for r in latest if r.get("kind") == "cell"}
    ops_rows = [r for r in latest if r.get("kind") == "op"]
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in ops_rows:
        by_cell[r["cell"]].append(r)
    # failures that torch@<same device> shares are flagged (native_also_fails), never dropped
    failures = native_check.annotate([r for r in ops_rows if r["status"] in FAILING], ops_rows)
    native = native_check.tally(failures)
    summary = []
    for cell_id in sorted(set(cells) | set(by_cell)):
        meta = cells.get(cell_id, {})
        rs = by_cell.get(cell_id, [])
        counts = Counter(r["status"] for r in rs)
        ops = {r["op"] for r in rs}
        passing_ops = {
            op
            for op in ops
            if all(r["status"] in ("pass", "unsupported", "skip") for r in rs if r["op"] == op)
            and any(r["status"] == "pass" for r in rs if r["op"] == op)
        }
        speedups = [s for s in map(_timed_work, rs) if s]
        summary.append(
            {
                "cell": cell_id,
                "backend": meta.get("backend", cell_id.split("@")[0]),
                "device": meta.get("device", cell_id.split("@")[-1]),
                "device_name": meta.get("device_name")
                or next((r.get("device_name") for r in rs if r.get("device_name")), ""),
                "state": meta.get("status", "pass") if rs or meta else "pass",
                "reason": meta.get("reason"),
                "cases": len(rs),
                "counts": dict(counts),
                "operators": len(ops),
                "operators_passing": len(passing_ops),
                "geomean_speedup": _geomean(speedups),
                "faster_than_native": (sum(1 for s in speedups if s > 1.0) / len(speedups))
                if speedups
                else None,
                "compile_s": round(sum(r.get("compile_s") or 0 for r in rs), 2),
                "perf": cell_figures(rs),  # both timing modes, fast_p, roofline, noise (perf/figures.py)
                "not_run": sum(not_run[cell_id].values()),
                "own_code": _own_code_coverage(rs),
                "native_check": native.get(cell_id),
                "versions": meta.get("versions")
                or next((r.get("versions") for r in rs if r.get("versions")), {}),
            }
        )
    grid: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for cell_id, rs in by_cell.items():
        per_op: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rs:
            per_op[r["op"]].append(r)
        for op, items in per_op.items():
            counts = Counter(r["status"] for r in items)
            speed = _geomean([s for s in map(_timed_work, items) if s])
            grid[op][cell_id] = {
                "counts": dict(counts),
                "cases": len(items),
                "geomean_speedup": speed,
                "verdict": verdict(counts),
            }
    for cell_id, per_op in not_run.items():
        for op, n in per_op.items():
            entry = grid[op].setdefault(
                cell_id, {"counts": {}, "cases": 0, "geomean_speedup": None, "verdict": "skip"}
            )
            entry["not_run"] = n
    serving = [r for r in latest if r.get("kind") == "serving"]
    return {"cells": summary, "grid": grid, "failures": failures, "serving": serving, "not_run": len(missing)}
