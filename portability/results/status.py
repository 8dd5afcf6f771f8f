"""The one table of result statuses. Every symbol, legend, JUnit mapping, HTML mark and verdict rule is
derived from `STATUS_TABLE`; adding a status is one `Status(...)` line here plus its paragraph in
docs/statuses.md (tests/test_status_table.py checks both agree).

`Status.kind` says whom a status blames:
- "ok":        the backend's own code ran and its result was right;
- "failing":   something is wrong with the backend's operator (counts as a failure);
- "neutral":   not run or not the backend's to answer (the environment, a declared gap); never a failure,
               never a pass (`fallback`: the call never reached the backend's code, so it proves nothing).

`rank` puts failing statuses first, then `flaky` and `fallback` before `pass`: an operator with one
case that fell back to native torch is not shown as the backend's ✓.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

StatusKind = Literal["ok", "failing", "neutral"]
JUnitElement = Literal["pass", "failure", "error", "skipped"]


@dataclass(frozen=True)
class Status:
    name: str
    kind: StatusKind
    #: the scorecard grid's symbol (Markdown, HTML table)
    symbol: str
    #: a plain-letter mark for plots (matplotlib's default font has no emoji)
    plot_mark: str
    #: how junit.xml reports a case with this status
    junit: JUnitElement
    #: the legend's words after the symbol
    legend: str
    #: precedence when one verdict sums up many cases: lower wins (the worst failing status first)
    rank: int


STATUS_TABLE: tuple[Status, ...] = (
    Status("pass", "ok", "✓", "", "pass", "all cases pass (geomean speedup vs torch on the same device)", 7),
    Status("fail", "failing", "✗", "X", "failure", "wrong result", 4),
    Status("flaky", "failing", "~", "~", "failure", "failed or crashed, then passed on a re-run", 5),
    Status("error", "failing", "E", "E", "error", "error", 3),
    Status("timeout", "failing", "⏱", "T", "error", "timeout", 1),
    Status("crash", "failing", "💥", "C", "error", "crash", 0),
    Status("oom", "failing", "OOM", "M", "error", "out of memory", 2),
    Status("fallback", "neutral", "↩", "F", "skipped", "ran native torch, not the backend's own code", 6),
    Status("unsupported", "neutral", "∅", "U", "skipped", "unsupported dtype/op", 8),
    Status("skip", "neutral", "–", "-", "skipped", "skipped", 9),
    Status("infra", "neutral", "?", "?", "skipped", "infra", 10),
    Status("unavailable", "neutral", "·", "·", "skipped", "cell unavailable", 11),
)

BY_NAME: Mapping[str, Status] = {s.name: s for s in STATUS_TABLE}
STATUSES: tuple[str, ...] = tuple(s.name for s in STATUS_TABLE)
FAILING: tuple[str, ...] = tuple(s.name for s in STATUS_TABLE if s.kind == "failing")
NEUTRAL: tuple[str, ...] = tuple(s.name for s in STATUS_TABLE if s.kind == "neutral")
SYMBOL: Mapping[str, str] = {s.name: s.symbol for s in STATUS_TABLE}
PLOT_MARK: Mapping[str, str] = {s.name: s.plot_mark for s in STATUS_TABLE if s.plot_mark}


def is_failing(status: str) -> bool:
    return BY_NAME[status].kind == "failing"


def legend() -> str:
    """One line explaining every grid symbol (a cell-only status such as `unavailable` has none)."""
    parts = [f"{s.symbol} {s.legend}" for s in STATUS_TABLE if s.name != "unavailable"]
    return " · ".join([*parts, "blank: not run"])


def verdict(counts: Mapping[str, int]) -> str:
    """The one status that sums up a set of cases: the worst failing status present, else pass if any case
    passed, else the most telling neutral status (a group with no cases at all is `skip`)."""
    present = [BY_NAME[s] for s, n in counts.items() if n and s in BY_NAME]
    return min(present, key=lambda s: s.rank).name if present else "skip"


def junit_element(status: str) -> JUnitElement:
    return BY_NAME[status].junit
