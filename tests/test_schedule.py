"""How a cell's cases are ordered for pytest-xdist's worksteal workers (portability/plan/schedule.py)."""

from portability.plan.schedule import deal, order_cases, worksteal_blocks
from portability.run.case import CaseRequest


def _case(op: str, case: str, dtype: str, nbytes: int) -> CaseRequest:
    return CaseRequest(
        id=f"c::{op}::{case}::{dtype}",
        cell="c",
        backend="b",
        device="cuda",
        op=op,
        case=case,
        dtype=dtype,
        atol=0.0,
        rtol=0.0,
        warmup=1,
        repetitions=1,
        budget_s=0.1,
        input_bytes=nbytes,
    )


def test_blocks_are_the_sizes_worksteal_hands_out():
    assert worksteal_blocks(10, 3) == [3, 3, 4]
    assert worksteal_blocks(3709, 12)[0] == 309 and sum(worksteal_blocks(3709, 12)) == 3709
    assert worksteal_blocks(2, 4) == [0, 0, 1, 1]


def test_each_worker_block_starts_with_one_of_the_heaviest_and_nothing_is_lost():
    cases = list(range(37))  # cost = the number itself
    ordered = deal(cases, 4, cost=lambda c: c)
    assert sorted(ordered) == cases
    starts, at = [], 0
    for size in worksteal_blocks(37, 4):
        starts.append(ordered[at])
        at += size
    assert sorted(starts) == [33, 34, 35, 36]
    assert deal(cases, 1, cost=lambda c: c) == cases  # one worker: the catalog order


def test_the_dtypes_of_a_heavy_case_go_to_different_workers():
    dtypes = ("fp32", "fp16", "bf16")
    cases = [
        _case(op, "big" if op == "topk" and n == 0 else f"small {n}", d, (4 if d == "fp32" else 2) * size)
        for op in ("add", "topk", "mul")
        for n, size in enumerate((10**7 if op == "topk" else 100, 50, 60))
        for d in dtypes
    ]
    ordered = order_cases(cases, 3)
    blocks, at = [], 0
    for size in worksteal_blocks(len(cases), 3):
        blocks.append(ordered[at : at + size])
        at += size
    firsts = [block[0] for block in blocks]
    assert {(c.op, c.case) for c in firsts} == {("topk", "big")}
    assert sorted(c.dtype for c in firsts) == sorted(dtypes)
    assert sorted(c.id for c in ordered) == sorted(c.id for c in cases)
