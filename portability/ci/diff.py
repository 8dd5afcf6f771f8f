"""Baselines and diffs: what changed between two runs, for the sticky PR comment a maintainer reads.

The comment says, in this order: the verdict (regressions, improvements, cases not run, operators newly
covered, overloads the pull request registers that no case exercises), then the changed rows, then the
run's own scorecard collapsed; never more than 64 KB, whatever the size of the runs.

What is compared is what the head run set out to run: with a plan (plan.json), base cases of operators or
cells outside the head's plan (a pull request that ran only the operators it touches) are left out, a
planned case without a row is *not run* (a run cut short, a shard that never arrived), and only a case the
head no longer plans at all is a coverage drop."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from portability.plan.case_id import CaseId
from portability.registry import baseline_name
from portability.results.rundir import RunDir
from portability.results.status import FAILING
from portability.results.store import latest_by_id, planned_cases, planned_cells, read_results
from portability.scorecard.markdown import MAX_COMMENT_BYTES, render_markdown
from portability.scorecard.safe_text import md_text
from portability.scorecard.summary import summarize

MARKER = "<!-- flagos-portability-diff -->"
MIN_SPEEDUP_DROP = 0.10  # a speedup change smaller than this is never called a regression
CHANGES_SHARE = 0.45  # of the comment, for the changed rows (regressions and improvements)
LIST_SHARE = 16  # a list of names (not run, newly covered, unexercised) takes at most 1/16 of the comment
SCORECARD_MIN = 4_000  # the least of the run's scorecard worth embedding
GRID_LEFT_OUT = "_Operator grid ("  # how scorecard/markdown.py says the grid did not fit


@dataclass
class Change:
    id: str
    kind: str  # regression | improvement
    what: str
    base: Any
    new: Any


@dataclass
class Run:
    """What a diff reads of a run directory (or of a bare results.jsonl: no plan, no coverage)."""

    rows: dict[str, dict[str, Any]]  # the latest row of each case
    planned: dict[str, dict[str, Any]] | None = None  # plan.json's cases by id
    planned_cells: set[str] | None = None
    coverage: dict[str, Any] | None = None

    @classmethod
    def read(cls, path: Path) -> Run:
        run_dir = RunDir.of(path)
        rows = latest_by_id(read_results(path))
        own = path.is_dir() or path == run_dir.results  # a loose results file has no plan beside it
        plan = run_dir.read_json(run_dir.plan) if own else None
        cases, _ = planned_cases(plan, run_dir.plan)  # validated: bad entries skipped, and said
        planned = {c["id"]: c for c in cases} if cases is not None else None
        cells = planned_cells(plan)
        return cls(rows, planned, cells, run_dir.read_json(run_dir.coverage) if own else None)


@dataclass
class Diff:
    regressions: list[Change] = field(default_factory=list)
    improvements: list[Change] = field(default_factory=list)
    # case ids the head planned, or the base ran in a cell with no shard, that never ran
    not_run: list[str] = field(default_factory=list)
    cells_not_run: list[str] = field(default_factory=list)  # head cells with no shard: not run at all
    # operators with a passing case in the head and none in the base
    newly_covered: list[str] = field(default_factory=list)
    unexercised: list[str] = field(default_factory=list)  # overloads the head registers and no case reaches
    unexercised_is_new: bool = True  # False: no base coverage to tell which of them the pull request adds


def _noise(row: dict[str, Any]) -> float:
    """Relative spread of one timing: (p90 - p10) / median, or, for a run with --repeat, its measured
    coefficient of variation (perf: 2 × 1.5·cv ≈ two standard deviations of a ratio of two timings)."""
    if row.get("latency_cv") is not None:  # perf (issue #17): the repeat-measured noise wins
        return 1.5 * float(row["latency_cv"])
    med, p10, p90 = row.get("latency_ms"), row.get("latency_p10_ms"), row.get("latency_p90_ms")
    if not med or p10 is None or p90 is None:
        return 0.0
    return (p90 - p10) / med


def _status_change(case_id: str, b: dict[str, Any], n: dict[str, Any]) -> Change | None:
    if n["status"] in FAILING and b["status"] not in FAILING:
        return Change(case_id, "regression", f"{b['status']} → {n['status']}", b["status"], n["status"])
    if b["status"] in FAILING and n["status"] == "pass":
        return Change(case_id, "improvement", f"{b['status']} → pass", b["status"], "pass")
    return None


def _speed_change(case_id: str, b: dict[str, Any], n: dict[str, Any]) -> Change | None:
    bs, ns = b.get("speedup"), n.get("speedup")
    if (
        b["status"] != "pass"
        or n["status"] != "pass"
        or not bs
        or not ns
        or b.get("backend") == baseline_name()
    ):
        return None
    threshold = max(MIN_SPEEDUP_DROP, 2 * max(_noise(b), _noise(n)))  # beyond the measured noise
    change = (ns - bs) / bs
    if change < -threshold:
        what = f"speedup {bs:.2f}x → {ns:.2f}x ({change:+.0%}, noise ±{threshold:.0%})"
        return Change(case_id, "regression", what, bs, ns)
    if change > threshold:
        return Change(case_id, "improvement", f"speedup {bs:.2f}x → {ns:.2f}x ({change:+.0%})", bs, ns)
    return None


def compare(base: Run, new: Run) -> Diff:
    diff = Diff()
    cells_not_run = {r["cell"] for r in new.rows.values() if r.get("kind") == "cell" and r.get("not_run")}
    diff.cells_not_run = sorted(cells_not_run)
    in_scope = _scope(new)
    planned_missing = set(new.planned or ()) - set(new.rows)
    not_run = set(planned_missing)
    for case_id, b in base.rows.items():
        if b.get("kind") != "op" or not in_scope(b):
            continue
        n = new.rows.get(case_id)
        if n is None:
            if b["cell"] in cells_not_run:
                not_run.add(case_id)
            elif case_id not in planned_missing and b["status"] == "pass":
                diff.regressions.append(
                    Change(case_id, "regression", "coverage drop: case no longer run", "pass", "—")
                )
            continue
        change = _status_change(case_id, b, n) if b["status"] != n["status"] else _speed_change(case_id, b, n)
        if change:
            (diff.regressions if change.kind == "regression" else diff.improvements).append(change)
    for case_id, n in new.rows.items():
        if n.get("kind") == "op" and case_id not in base.rows and n["status"] in FAILING:
            diff.regressions.append(
                Change(case_id, "regression", f"new case: {n['status']}", "—", n["status"])
            )
    diff.not_run = sorted(not_run)
    diff.newly_covered = sorted(_passing_ops(new) - _passing_ops(base))
    diff.unexercised, diff.unexercised_is_new = _unexercised(base.coverage, new.coverage)
    return diff


def _passing_ops(run: Run) -> set[str]:
    return {r["op"] for r in run.rows.values() if r.get("kind") == "op" and r["status"] == "pass"}


def _scope(new: Run) -> Callable[[dict[str, Any]], bool]:
    """Whether a base case is within what the head set out to run (its plan's operators and cells)."""
    if new.planned is None:
        return lambda row: True
    ops = {c["op"] for c in new.planned.values()} | {r.get("op") for r in new.rows.values()}
    cells = set(new.planned_cells or ()) | {r["cell"] for r in new.rows.values() if r.get("cell")}
    return lambda row: row.get("op") in ops and row.get("cell") in cells


def _registered(coverage: dict[str, Any]) -> set[str]:
    return set(coverage.get("covered_by") or {}) | set(coverage.get("uncovered") or [])


def _unexercised(base: dict[str, Any] | None, new: dict[str, Any] | None) -> tuple[list[str], bool]:
    """Overloads the head's FlagGems registers that no case exercises: those the base did not register
    (the pull request adds them), or all of them (flagged) when the base has no coverage to tell."""
    if not new:
        return [], True
    uncovered = list(new.get("uncovered") or [])
    if not base:
        return uncovered, False
    before = _registered(base)
    return [k for k in uncovered if k not in before], True


def verdict_line(diff: Diff) -> str:
    n = len(diff.regressions)
    parts = [
        "**No regressions**" if not n else f"**{n} regression(s)**",
        f"{len(diff.improvements)} improvement(s)",
    ]
    if diff.not_run or diff.cells_not_run:
        cells = f", {len(diff.cells_not_run)} whole cell(s)" if diff.cells_not_run else ""
        parts.append(f"**{len(diff.not_run)} case(s) not run{cells}**")
    parts.append(f"{len(diff.newly_covered)} newly covered operator(s)")
    if diff.unexercised:
        what = "registered by this pull request" if diff.unexercised_is_new else "registered"
        parts.append(f"**{len(diff.unexercised)} overload(s) {what} that no case exercises**")
    return " · ".join(parts) + "."


def render(diff: Diff, new: Run, limit: int = MAX_COMMENT_BYTES) -> str:
    """The PR comment, at most `limit` bytes: the verdict, the changed rows (regressions, then
    improvements; at most CHANGES_SHARE of the comment, cut with a count), the lists (not run, newly
    covered, unexercised; each at most 1/LIST_SHARE), then the run's scorecard collapsed in what is left
    (its operator grid only for the operators with a change when the whole grid would not fit)."""
    lines = [MARKER, "## FlagOS portability: changes against the base branch", "", verdict_line(diff), ""]
    budget = int(limit * CHANGES_SHARE)
    tables = [
        (t, c) for t, c in (("Regressions", diff.regressions), ("Improvements", diff.improvements)) if c
    ]
    for i, (title, changes) in enumerate(tables):
        share = budget * 2 // 3 if i == 0 and len(tables) == 2 else budget  # improvements keep a third
        table = _changes_table(title, changes, share)
        lines += table
        budget -= _size(table)
    for title, names in (
        ("Not run", _not_run_lines(diff)),
        ("Newly covered operators", diff.newly_covered),
        (_unexercised_title(diff), diff.unexercised),
    ):
        if names:
            lines += [f"### {title}", "", _name_list(names, limit // LIST_SHARE), ""]
    wrapper = ["<details><summary>Full scorecard of this run</summary>", "", "", "", "</details>"]
    room = limit - _size(lines) - _size(wrapper) - 2
    if room < SCORECARD_MIN:
        return "\n".join([*lines, "_The run's scorecard did not fit in this comment: see scorecard.md._"])
    return "\n".join([*lines, *wrapper[:2], _scorecard(diff, new, room), *wrapper[3:]])


def _changes_table(title: str, changes: list[Change], budget: int) -> list[str]:
    rows = [[md_text(c.id, 120), md_text(c.what, 120)] for c in changes]
    shown = _rows_that_fit(rows, budget - 200)
    table = tabulate(rows[:shown], headers=["case", "change"], tablefmt="github")
    more = (
        [f"… {len(rows) - shown} more {title.lower()} (`portability diff` lists all)"]
        if shown < len(rows)
        else []
    )
    return [f"### {title}", "", table, *more, ""]


def _unexercised_title(diff: Diff) -> str:
    if diff.unexercised_is_new:
        return "Registered by this pull request, exercised by no case"
    return "Registered, exercised by no case (the base run has no coverage.json to tell which are new)"


def _scorecard(diff: Diff, new: Run, room: int) -> str:
    """The run's scorecard in `room` bytes. When its operator grid does not fit whole, the grid of the
    operators with a change, else of those with a regression, is tried (and said so) before none."""
    data = summarize(list(new.rows.values()), list(new.planned.values()) if new.planned else None)
    if new.coverage:
        data["coverage"] = new.coverage
    text = render_markdown(data, limit=room)
    regressed = {_op_of(c.id) for c in diff.regressions}
    changed = regressed | {_op_of(c.id) for c in diff.improvements} | {_op_of(i) for i in diff.not_run}
    grid = data["grid"]
    for ops, which in (
        (changed | set(diff.newly_covered), "with a change"),
        (regressed, "with a regression"),
    ):
        if GRID_LEFT_OUT not in text or not ops:
            break
        data["grid"] = {op: cells for op, cells in grid.items() if op in ops}
        note = f"_Operator grid: the {len(data['grid'])} operators {which} (of {len(grid)}: scorecard.json)._"
        text = note + "\n\n" + render_markdown(data, limit=room - len(note.encode()) - 2)
    return text


def _op_of(case_id: str) -> str:
    return CaseId.parse(case_id).op


def _not_run_lines(diff: Diff) -> list[str]:
    """Whole cells first, then the number of unrun cases per cell (`portability diff` has their ids)."""
    per_cell: dict[str, int] = {}
    for case_id in diff.not_run:
        cell = CaseId.parse(case_id).cell
        per_cell[cell] = per_cell.get(cell, 0) + 1
    whole = [f"{cell}: no shard arrived, the whole cell is not run" for cell in diff.cells_not_run]
    return whole + [f"{cell}: {n} planned case(s) not run" for cell, n in sorted(per_cell.items())]


def _name_list(names: list[str], budget: int) -> str:
    """Names on one line, comma-separated, within `budget` bytes; the rest counted."""
    kept: list[str] = []
    used = 0
    for name in names:
        text = md_text(name, 160)
        if used + len(text.encode()) + 2 > budget - 80:
            break
        kept.append(text)
        used += len(text.encode()) + 2
    more = (
        f" … and {len(names) - len(kept)} more (`portability diff` lists all)"
        if len(kept) < len(names)
        else ""
    )
    return ", ".join(kept) + more


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
    base_run, new_run = Run.read(base), Run.read(new)
    d = compare(base_run, new_run)
    return d, render(d, new_run)
