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
        cases=row_cases(LOGITS),
        flaggems=("softmax",),
        tags=(*QWEN, "sampling", "smoke"),
        atol=PROB_ATOL,
    ),
    OpSpec(
        "log_softmax",
        lambda x: torch.log_softmax(x, dim=-1),
        cases=row_cases(LOGITS),
        flaggems=("log_softmax",),
        tags=(*QWEN, "sampling"),
    ),
    OpSpec(
        "sum_dim",
        lambda x: torch.sum(x, dim=-1),
        cases=row_cases(),
        flaggems=("sum_dim",),
        tags=QWEN,
        atol={"fp32": 1e-4, "fp16": 2e-2, "bf16": 1e-1},  # sums of up to 151936 terms
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
        cases=row_cases(LOGITS)[:4],
        flaggems=("argmax",),
        tags=(*QWEN, "sampling", "smoke"),
        compare="values_of_indices",
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
