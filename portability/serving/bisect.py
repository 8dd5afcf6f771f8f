"""Find the FlagGems operator(s) behind a failed accuracy gate by switching FlagGems on for subsets.

`find_culprits(ops, fails)` is the search itself, independent of any engine: `fails(subset)` says
whether the gate fails with FlagGems enabled for exactly `subset` (with none enabled the gate is known
to pass, with all enabled it is known to fail). Each failing half is split again, so k independent
culprits among n operators cost about 2·k·log2(n) runs; when neither half fails on its own, the
failure needs operators from both halves together, and the search finds the part of each half that is
needed given the other (as in delta debugging). A memo avoids re-running a subset; a run budget bounds
the whole search (and a wall-clock budget) and the smallest failing set seen so far is reported if
either runs out.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


class BudgetExhausted(Exception):
    pass


@dataclass
class BisectResult:
    culprits: list[str]
    runs: int
    complete: bool
    #: every subset tried, in order, with its outcome (True = gate failed)
    trace: list[tuple[list[str], bool]] = field(default_factory=list)


def find_culprits(
    ops: Sequence[str],
    fails: Callable[[list[str]], bool],
    max_runs: int = 64,
    budget_s: float = math.inf,
) -> BisectResult:
    """`max_runs` bounds the number of `fails` calls, `budget_s` the wall time: no new run starts after
    it is spent (a run already started is not interrupted)."""
    deadline = time.monotonic() + budget_s
    order = list(dict.fromkeys(ops))
    memo: dict[frozenset[str], bool] = {frozenset(): False, frozenset(order): True}
    trace: list[tuple[list[str], bool]] = []
    smallest = list(order)

    def test(subset: list[str]) -> bool:
        nonlocal smallest
        key = frozenset(subset)
        if key not in memo:
            if len(trace) >= max_runs or time.monotonic() >= deadline:
                raise BudgetExhausted
            memo[key] = bool(fails(sorted(subset, key=order.index)))
            trace.append((sorted(subset, key=order.index), memo[key]))
        if memo[key] and len(subset) < len(smallest):
            smallest = sorted(subset, key=order.index)
        return memo[key]

    def search(suspects: list[str], context: list[str]) -> list[str]:
        """Precondition: context + suspects fails, context alone passes."""
        if len(suspects) == 1:
            return suspects
        half = len(suspects) // 2
        a, b = suspects[:half], suspects[half:]
        fa = test(context + a)
        fb = test(context + b)
        if fa or fb:
            found = search(a, context) if fa else []
            return found + (search(b, context) if fb else [])
        a_needed = search(a, context + b)
        return a_needed + search(b, context + a_needed)

    if not order:
        return BisectResult([], 0, True, trace)
    try:
        culprits = search(order, [])
    except BudgetExhausted:
        return BisectResult(smallest, len(trace), False, trace)
    return BisectResult(sorted(dict.fromkeys(culprits), key=order.index), len(trace), True, trace)
