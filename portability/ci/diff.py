"""Baselines and diffs: what changed between two runs, verdict first, for a sticky PR comment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from portability.registry import baseline_name
from portability.results.status import FAILING
from portability.results.store import latest_by_id, read_results
from portability.scorecard.write import MAX_COMMENT_BYTES, md_text, render_markdown, summarize

MARKER = "<!-- flagos-portability-diff -->"
MIN_SPEEDUP_DROP = 0.10  # a speedup change smaller than this is never called a regression
# Bytes kept for the embedded scorecard when the changes are long, and the least worth embedding.
SCORECARD_RESERVE = 12_000
SCORECARD_MIN = 4_000


@dataclass
class Change:
    id: str
    kind: str  # regression | improvement
    what: str
    base: Any
    new: Any


@dataclass
class Diff:
    regressions: list[Change] = field(default_factory=list)
    improvements: list[Change] = field(default_factory=list)


def _noise(row: dict[str, Any]) -> float:
    """Relative spread of one timing: (p90 - p10) / median, or, for a run with --repeat, its measured
    coefficient of variation (perf: 2 × 1.5·cv ≈ two standard deviations of a ratio of two timings)."""
    if row.get("latency_cv") is not None:  # perf (issue #17): the repeat-measured noise wins
        return 1.5 * float(row["latency_cv"])
    med, p10, p90 = row.get("latency_ms"), row.get("latency_p10_ms"), row.get("latency_p90_ms")
    if not med or p10 is None or p90 is None:
        return 0.0
    return (p90 - p10) / med


def compare(base_rows: list[dict[str, Any]], new_rows: list[dict[str, Any]]) -> Diff:
    base, new = latest_by_id(base_rows), latest_by_id(new_rows)
    diff = Diff()
    for case_id, b in base.items():
        n = new.get(case_id)
        if b.get("kind") != "op":
            continue
        if n is None:
            if b["status"] == "pass":
                diff.regressions.append(
                    Change(case_id, "regression", "coverage drop: case no longer run", "pass", "—")
                )
            continue
        if b["status"] != n["status"]:
            worse = n["status"] in FAILING and b["status"] not in FAILING
            better = b["status"] in FAILING and n["status"] == "pass"
            if worse:
                diff.regressions.append(
                    Change(case_id, "regression", f"{b['status']} → {n['status']}", b["status"], n["status"])
                )
            elif better:
                diff.improvements.append(
                    Change(case_id, "improvement", f"{b['status']} → pass", b["status"], "pass")
                )
            continue
        bs, ns = b.get("speedup"), n.get("speedup")
        if b["status"] == "pass" and bs and ns and b.get("backend") != baseline_name():
            threshold = max(MIN_SPEEDUP_DROP, 2 * max(_noise(b), _noise(n)))  # beyond the measured noise
            change = (ns - bs) / bs
            if change < -threshold:
                diff.regressions.append(
                    Change(
                        case_id,
                        "regression",
                        f"speedup {bs:.2f}x → {ns:.2f}x ({change:+.0%}, noise ±{threshold:.0%})",
                        bs,
                        ns,
                    )
                )
            elif change > threshold:
                diff.improvements.append(
                    Change(case_id, "improvement", f"speedup {bs:.2f}x → {ns:.2f}x ({change:+.0%})", bs, ns)
                )
    for case_id, n in new.items():
        if n.get("kind") == "op" and case_id not in base and n["status"] in FAILING:
            diff.regressions.append(
                Change(case_id, "regression", f"new case: {n['status']}", "—", n["status"])
            )
    return diff


def render(diff: Diff, new_rows: list[dict[str, Any]], limit: int = MAX_COMMENT_BYTES) -> str:
    """The PR comment, at most `limit` bytes: verdict first, then the changes (regressions before
    improvements, cut with a count when they would not fit), then as much of the run's own scorecard as
    the rest of the budget allows."""
    n = len(diff.regressions)
    verdict = "**No regressions.**" if not n else f"**{n} regression(s).**"
    lines = [
        MARKER,
        "## FlagOS portability: changes against the baseline",
        "",
        f"{verdict} {len(diff.improvements)} improvement(s).",
        "",
    ]
    # the changes may use what the scorecard's head (title, verdict, cells) leaves of the budget
    changes_budget = limit - SCORECARD_RESERVE
    for title, changes in (("Regressions", diff.regressions), ("Improvements", diff.improvements)):
        if not changes:
            continue
        rows = [[md_text(c.id, 120), md_text(c.what, 120)] for c in changes]
        used = _size(lines) + len(f"### {title}\n\n".encode())
        shown = _rows_that_fit(rows, changes_budget - used)
        table = tabulate(rows[:shown], headers=["case", "change"], tablefmt="github")
        lines += [f"### {title}", "", table, ""]
        if shown < len(rows):
            lines.append(f"… {len(rows) - shown} more {title.lower()} (`portability diff` lists all)\n")
    wrapper = ["<details><summary>Full scorecard of this run</summary>", "", "", "", "</details>"]
    room = limit - _size(lines) - _size(wrapper) - 2
    if room >= SCORECARD_MIN:
        full = render_markdown(summarize(new_rows), limit=room)
        lines += [*wrapper[:2], full, *wrapper[3:]]
    else:
        lines.append("_The run's full scorecard did not fit in this comment: see scorecard.md._")
    return "\n".join(lines)


def _size(lines: list[str]) -> int:
    return len("\n".join(lines).encode()) + 1


def _rows_that_fit(rows: list[list[str]], budget: int) -> int:
    """How many leading rows of a two-column GitHub table fit in `budget` bytes (header included)."""
    lo, hi = 0, len(rows)
    while lo < hi:  # the table's width depends on its widest row: measure the rendered table
        mid = (lo + hi + 1) // 2
        if len(tabulate(rows[:mid], headers=["case", "change"], tablefmt="github").encode()) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def diff_runs(base: Path, new: Path) -> tuple[Diff, str]:
    base_rows, new_rows = read_results(base), read_results(new)
    d = compare(base_rows, new_rows)
    return d, render(d, new_rows)
