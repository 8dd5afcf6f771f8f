"""The order a cell's cases reach pytest-xdist's `worksteal` scheduler in.

At the start, worksteal hands each worker one contiguous block of the collection; later an idle worker
steals half of the longest queue, all but the case the busy worker has already taken as pytest's
`nextitem`. In the catalog's order the dtypes of one case are neighbours, so they land in one block
and run one after another. Seen on an H100 warm sweep: FlagGems' `topk` over 63x151,936 logits at
k = 256 timed out (120 s) at each of three dtypes, the third queued as `nextitem` behind the first two,
and the sweep's tail was the timeouts' sum, not their maximum.

xdist has no notion of a test's cost, so we order the collection for it (longest-processing-time
first, the classic makespan heuristic): the cases, heaviest first, are dealt round-robin into one pile
per worker, each pile the size of the block worksteal will give that worker. Each worker starts on a
heavy case, and neighbours in that order go to different workers. A case weighs at every dtype what
it weighs at its largest, so its dtypes stay neighbours and are dealt to different workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from portability.run.case import CaseRequest

T = TypeVar("T")


def worksteal_blocks(n_items: int, workers: int) -> list[int]:
    """The block sizes worksteal's first distribution gives each of `workers` idle workers (xdist's
    `check_schedule`: each idle worker in turn gets what is pending // workers still to serve)."""
    sizes, pending = [], n_items
    for i in range(workers):
        size = pending // (workers - i)
        sizes.append(size)
        pending -= size
    return sizes


def deal(cases: Sequence[T], workers: int, cost: Callable[[T], float]) -> list[T]:
    """`cases` reordered so that each worker's first block starts with a heavy case and no worker gets
    two of the heaviest `workers` cases. Ties keep their given (catalog) order."""
    if workers <= 1 or len(cases) <= 1:
        return list(cases)
    sizes = worksteal_blocks(len(cases), workers)
    piles: list[list[T]] = [[] for _ in sizes]
    heavy_first = sorted(cases, key=cost, reverse=True)  # sorted() is stable
    turn = 0
    for case in heavy_first:
        while len(piles[turn]) == sizes[turn]:  # a full pile (a smaller block) is skipped
            turn = (turn + 1) % len(piles)
        piles[turn].append(case)
        turn = (turn + 1) % len(piles)
    return [case for pile in piles for case in pile]


def order_cases(cases: Sequence[CaseRequest], workers: int) -> list[CaseRequest]:
    """One cell's cases in the order its `workers` worksteal workers are fed (input bytes as the cost)."""
    weight: dict[tuple[str, str], int] = {}
    for c in cases:
        weight[(c.op, c.case)] = max(weight.get((c.op, c.case), 0), c.input_bytes)
    return deal(cases, workers, cost=lambda c: weight[(c.op, c.case)])
