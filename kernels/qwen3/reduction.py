"""Reductions: softmax / log_softmax over the vocabulary, sums and means, argmax, cumulative sums."""

from __future__ import annotations

import torch
from portability.kernels.qwen3._model import HEAD_DIM, HIDDEN, Q_HEADS, VOCAB

from portability.spec import Case, OpSpec, T

QWEN = ("qwen3", "reduction")
LOGITS = {"low": -20.0, "high": 20.0}
# Probabilities over 151936 entries are ~1e-5 and smaller: an absolute tolerance near the default
# would accept anything. Judge them relatively, with an absolute floor at the resolution of tiny values.
PROB_ATOL = {"fp32": 1e-10, "fp16": 1e-6, "bf16": 1e-8}


NAN, INF = float("nan"), float("inf")


def masked_tail_cases() -> list[Case]:
    """Rows whose length is just past a power of two, with values near or below 0: a kernel that pads
    its block's masked lanes with 0 instead of -inf adds exp(0 - max) per lane to the denominator (on
    logits in [-20, 20] the max dwarfs that: 1.2e-6 off, inside tolerance). The last case puts NaN,
    +inf and -inf (a masked lane) in rows, the last row's last column included."""
    return [
        Case("masked tail 33x65", T(33, 65)),
        Case("log-probs 17x129", T(17, 129, low=-30.0, high=-10.0)),
        Case("block tail 3x65537", T(3, 65537)),
        Case("nan/inf lanes 4x33", T(4, 33, specials=(NAN, -INF, INF, -INF))),
    ]


ROW_BUGS = ("block_tail", "masked_lanes", "long_reduction", "strides", "nonfinite", "last_row", "empty")


def row_cases(rng: dict[str, float] | None = None) -> list[Case]:
    rng = rng or {}
    return [
        Case("logits 8x151936", T(8, VOCAB, **rng)),
        Case("scores 32x512x512", T(Q_HEADS, 512, 512, **rng)),
        Case("transposed 33x65", T(33, 65, layout="transposed", **rng)),
        Case("one", T(1, 1, **rng)),
        Case("empty", T(0, 16, **rng)),
    ]


SPECS = [
    OpSpec(
        "softmax",
        lambda x: torch.softmax(x, dim=-1),
        cases=row_cases(LOGITS) + masked_tail_cases(),
        flaggems=("softmax",),
        tags=(*QWEN, "sampling", "smoke"),
        atol=PROB_ATOL,
        exercises=ROW_BUGS,
    ),
    OpSpec(
        "log_softmax",
        lambda x: torch.log_softmax(x, dim=-1),
        cases=row_cases(LOGITS) + masked_tail_cases(),
        flaggems=("log_softmax",),
        tags=(*QWEN, "sampling"),
        exercises=ROW_BUGS,
    ),
    OpSpec(
        "sum_dim",
        lambda x: torch.sum(x, dim=-1),
        # A row of 65,537 values in [0, 1): a sum near 32,768, where fp16 spacing is 32: accumulating in
        # the input dtype loses every addend below 16 (torch accumulates in fp32).
        cases=[*row_cases(), Case("long row 2x65537", T(2, 65537, low=0.0, high=1.0))],
        flaggems=("sum_dim",),
        tags=QWEN,
        atol={"fp32": 1e-4, "fp16": 2e-2, "bf16": 1e-1},  # sums of up to 151936 terms
        exercises=("block_tail", "long_reduction", "strides", "empty"),
    ),
    OpSpec(
        "mean_dim",
        lambda x: torch.mean(x, dim=-1, keepdim=True),
        cases=[
            Case("variance 512x2560", T(512, HIDDEN)),
            Case("heads 512x32x128", T(512, Q_HEADS, HEAD_DIM)),
            Case("strided 7x13", T(7, 13, layout="strided")),
        ],
        flaggems=("mean_dim",),
        tags=QWEN,
    ),
    OpSpec(
        "amax",
        lambda x: torch.amax(x, dim=-1),
        cases=row_cases(LOGITS)[:4],
        flaggems=("amax",),
        tags=QWEN,
    ),
    OpSpec(
        "max_dim",
        lambda x: torch.max(x, dim=-1),
        cases=row_cases(LOGITS)[:4],
        flaggems=("max_dim",),
        tags=QWEN,
        compare="values_of_indices",
    ),
    OpSpec(
        "argmax",
        lambda x: torch.argmax(x, dim=-1),
        # torch documents argmax's choice among ties: the first maximal index. Exact indices, then, and
        # a case of many ties (integers 0..3 stored as floats) and one with NaN (the maximum, for torch).
        cases=[
            *row_cases(LOGITS)[:4],
            Case("ties 8x1000", T(8, 1000, kind="ties", low=0, high=4)),
            Case("nan 4x33", T(4, 33, specials=(NAN,))),
        ],
        flaggems=("argmax",),
        tags=(*QWEN, "sampling", "smoke"),
        compare="exact",
        exercises=("ties", "nonfinite", "last_row", "strides"),
    ),
    OpSpec(
        "cumsum",
        lambda x: torch.cumsum(x, dim=-1),
        cases=[
            Case("probs 8x151936", T(8, VOCAB, low=0.0, high=2.0 / VOCAB)),
            Case("positions 1x512", T(1, 512, low=0.0, high=1.0)),
            Case("transposed 33x65", T(33, 65, layout="transposed")),
            Case("empty", T(0, 8)),
        ],
        flaggems=("cumsum",),
        tags=(*QWEN, "sampling"),
        atol={"fp32": 1e-5, "fp16": 2e-2, "bf16": 1e-1},  # running sums of 65 terms in [-1, 1)
    ),
]
