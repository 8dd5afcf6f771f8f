"""Test-only operators, loaded through `PORTABILITY_SPECS=tests/fault_adapters/specs.py` so the fault
tests never depend on the real catalog in kernels/ (see portability/catalog.py)."""

import torch

from portability.spec import Case, CaseUnavailable, OpSpec, T


def _missing_sample(dtype: str, seed: int) -> tuple[tuple, dict]:
    raise CaseUnavailable(f"op_db planted has no sample 7 at {dtype} in this torch")


SPECS = [
    # One contiguous and one strided (transposed view) input: enough to tell every planted fault apart.
    OpSpec(
        "planted_scale",
        lambda x: x * 2.0,
        cases=[Case("contiguous 64x65", T(64, 65)), Case("transposed 65x64", T(65, 64, layout="transposed"))],
        dtypes=("fp32", "bf16"),
    ),
    # A few dozen milliseconds of work per case, for killing a run in the middle (resume test).
    OpSpec(
        "planted_work",
        lambda x: torch.softmax(x @ x.T, -1),
        cases=[Case(f"square {n}", T(n, n)) for n in range(96, 96 + 16 * 12, 16)],
        dtypes=("fp32",),
    ),
    # Forty cheap cases; tests/fault_adapters/hang_one.py hangs on the largest, which a worker takes
    # first (the runner feeds workers heaviest first), with its block of cases queued behind it.
    OpSpec(
        "planted_many",
        lambda x: x + 1,
        cases=[Case(f"vector {n}", T(n)) for n in range(96, 136)],
        dtypes=("fp32",),
    ),
    # Twelve cheap cases at three dtypes; hang_one.py hangs on the largest at every dtype.
    OpSpec(
        "planted_dtypes",
        lambda x: x + 1,
        cases=[Case(f"vector {n}", T(n)) for n in range(124, 136)],
        dtypes=("fp32", "fp16", "bf16"),
    ),
    # One case this torch cannot build (as when the installed torch's op_db lacks a sample the table
    # was generated from), beside one it can.
    OpSpec(
        "planted_unavailable",
        lambda x: x + 1,
        cases=[Case("vector 8", T(8)), Case.sampled("s7 absent", _missing_sample, 8)],
        dtypes=("fp32",),
    ),
    # 2^20 x 2^20 floats (4 TiB of input): must be refused at plan time, never allocated.
    OpSpec("planted_huge", lambda x: x + 1, cases=[Case("4 TiB", T(1 << 20, 1 << 20))], dtypes=("fp32",)),
]
