"""Baselines and diffs: what changed between two runs, verdict first, for a sticky PR comment."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from portability.results import FAILING, latest_by_id, read_results
from portability.scorecard import md_text, render_markdown, summarize

MARKER = "<!-- flagos-portability-diff -->"
MIN_SPEEDUP_DROP = 0.10  # a speedup change smaller than this is never called a regression


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
    """Relative spread of one timing: (p90 - p10) / median."""
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
        if b["status"] == "pass" and bs and ns and b.get("backend") != "torch":
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


def render(diff: Diff, new_rows: list[dict[str, Any]]) -> str:
    n = len(diff.regressions)
    verdict = "**No regressions.**" if not n else f"**{n} regression(s).**"
    lines = [
        MARKER,
        "## FlagOS portability: changes against the baseline",
        "",
        f"{verdict} {len(diff.improvements)} improvement(s).",
        "",
    ]
    for title, changes in (("Regressions", diff.regressions), ("Improvements", diff.improvements)):
        if changes:
            rows = [[md_text(c.id, 120), md_text(c.what, 120)] for c in changes[:300]]
            lines += [f"### {title}", "", tabulate(rows, headers=["case", "change"], tablefmt="github"), ""]
            if len(changes) > 300:
                lines.append(f"… {len(changes) - 300} more\n")
    full = render_markdown(summarize(new_rows), limit=40_000)
    lines += ["<details><summary>Full scorecard of this run</summary>", "", full, "", "</details>"]
    return "\n".join(lines)


def diff_runs(base: Path, new: Path) -> tuple[Diff, str]:
    base_rows, new_rows = read_results(base), read_results(new)
    d = compare(base_rows, new_rows)
    return d, render(d, new_rows)
