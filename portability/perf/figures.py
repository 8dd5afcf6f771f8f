"""Per-cell performance figures for the scorecard, from a cell's result rows.

- geomean speedup against native torch in both modes: call time (`speedup`, host dispatch included) and
  device time (`device_speedup`), over passing cases with non-trivial work only: native device time at
  least NONTRIVIAL_MS (native call time where there is no device time), so µs-scale launches that measure
  dispatch alone do not set the headline;
- fast_p (KernelBench's figure) at p = 0.8, 1.0, 1.5 in both modes: the share of the cases run (passing or
  failing; not skipped/unsupported) that are correct AND at least p× native;
- roofline: the distribution of `roofline_pct` over passing cases, the share within 50 % of the roof,
  the median per operator, and the operators without a work model (named, since they have no roofline);
- noise (runs with --repeat): the median coefficient of variation, and the share of non-trivial cases
  within NOISE_GOAL.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections import Counter, defaultdict
from typing import Any

from portability.results.status import FAILING

NONTRIVIAL_MS = 0.02  # 20 µs of native device time: below it a case mostly measures launch overhead
FAST_P = (0.8, 1.0, 1.5)
ROOFLINE_NEAR_PCT = 50.0  # "within 50 % of roofline": at least half the attainable rate
NOISE_GOAL = 0.03  # issue #21's goal: CV <= 3 % for cases of >= 20 µs
ROOFLINE_BUCKETS = (10.0, 25.0, 50.0, 75.0, 100.0)  # upper edges; one more bucket above the last


def geomean(values: list[float]) -> float | None:
    vals = [v for v in values if v and v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else None


def _quantiles(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    s = sorted(values)

    def pick(q: float) -> float:
        return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]

    return {"p10": pick(0.1), "median": statistics.median(s), "p90": pick(0.9)}


def nontrivial(row: dict[str, Any]) -> bool:
    native = row.get("baseline_device_ms") or row.get("baseline_ms")
    return bool(native) and native >= NONTRIVIAL_MS


def _fast_p(run: list[dict[str, Any]], key: str) -> dict[str, float | None]:
    return {
        f"{p:g}": (sum(1 for r in run if r["status"] == "pass" and (r.get(key) or 0) >= p) / len(run))
        if run
        else None
        for p in FAST_P
    }


def _buckets(values: list[float]) -> dict[str, int]:
    edges = (0.0, *ROOFLINE_BUCKETS)
    out = {f"{lo:g}-{hi:g}%": 0 for lo, hi in itertools.pairwise(edges)}
    out[f">{ROOFLINE_BUCKETS[-1]:g}%"] = 0
    for v in values:
        label = next(
            (f"{lo:g}-{hi:g}%" for lo, hi in itertools.pairwise(edges) if v < hi),
            f">{ROOFLINE_BUCKETS[-1]:g}%",
        )
        out[label] += 1
    return out


def cell_figures(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The performance figures of one cell's operator rows (latest row per case)."""
    run = [r for r in rows if r["status"] == "pass" or r["status"] in FAILING]
    passing = [r for r in run if r["status"] == "pass" and r.get("latency_ms") is not None]
    heavy = [r for r in passing if nontrivial(r)]
    roof = [r["roofline_pct"] for r in passing if r.get("roofline_pct") is not None]
    by_op: dict[str, list[float]] = defaultdict(list)
    modelled: dict[str, bool] = {}
    for r in passing:
        modelled[r["op"]] = modelled.get(r["op"], False) or bool(r.get("work_bytes") or r.get("work_flops"))
        if r.get("roofline_pct") is not None:
            by_op[r["op"]].append(r["roofline_pct"])
    cvs = [r["latency_cv"] for r in heavy if r.get("latency_cv") is not None]
    return {
        "timed": len(passing),
        "nontrivial": len(heavy),
        "nontrivial_ms": NONTRIVIAL_MS,
        "geomean_latency_speedup": geomean([r.get("speedup") for r in heavy]),
        "geomean_device_speedup": geomean([r.get("device_speedup") for r in heavy]),
        "fast_p": {"latency": _fast_p(run, "speedup"), "device": _fast_p(run, "device_speedup")},
        "roofline": {
            "cases": len(roof),
            "quantiles": _quantiles(roof),
            "within_50pct": (sum(1 for v in roof if v >= ROOFLINE_NEAR_PCT) / len(roof)) if roof else None,
            "buckets": _buckets(roof),
            "by_op": {op: statistics.median(v) for op, v in sorted(by_op.items())},
            "no_work_model": sorted(op for op, has in modelled.items() if not has),
        },
        "cache": dict(Counter(r.get("cache") for r in passing if r.get("cache"))),
        "noise": {
            "cases": len(cvs),
            "median_cv": statistics.median(cvs) if cvs else None,
            "within_goal": (sum(1 for c in cvs if c <= NOISE_GOAL) / len(cvs)) if cvs else None,
            "goal": NOISE_GOAL,
        }
        if cvs
        else None,
        "multi_kernel_ops": _multi_kernel_ops(passing),
    }


def _multi_kernel_ops(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Operators whose one call launches more than one device kernel (the most of any case): a
    "softmax" that takes five kernels is a finding."""
    most: dict[str, float] = {}
    for r in rows:
        k = r.get("kernels_per_call") or 0
        if k > 1:
            most[r["op"]] = max(most.get(r["op"], 0), k)
    return dict(sorted(most.items(), key=lambda kv: -kv[1]))
