"""Pointwise arithmetic: residual adds, scaling, masks and comparisons on the Qwen3-4B path."""

from __future__ import annotations

import torch
from portability.kernels.qwen3._model import HIDDEN, VOCAB

from portability.spec import Case, OpSpec, T

POS = {"low": 0.1, "high": 4.0}  # strictly positive inputs for log / rsqrt / sqrt / reciprocal


def binary_cases(**rng: float) -> list[Case]:
    return [
        Case("decode 8x2560", T(8, HIDDEN, **rng), T(8, HIDDEN, **rng)),
        Case("prefill 512x2560", T(512, HIDDEN, **rng), T(512, HIDDEN, **rng)),
        Case("broadcast 512x2560 * 2560", T(512, HIDDEN, **rng), T(HIDDEN, **rng)),
        # Qwen3RMSNorm on a 16x512 prefill: `hidden * rsqrt(variance)`, then `weight * hidden`. FlagGems
        # 5.0.2's Hopper `mul` crashed transformers' Qwen3-4B in one of them (illegal memory access).
        Case("norm scale 16x512x2560 * 16x512x1", T(16, 512, HIDDEN, **rng), T(16, 512, 1, **rng)),
        Case("norm weight 2560 * 16x512x2560", T(HIDDEN, **rng), T(16, 512, HIDDEN, **rng)),
        Case("transposed 33x65", T(33, 65, **rng), T(33, 65, layout="transposed", **rng)),
        Case("empty", T(0, 8, **rng), T(0, 8, **rng)),
        Case("block tail 65537", T(65537, **rng), T(65537, **rng)),
    ]


def unary_cases(**rng: float) -> list[Case]:
    return [
        Case("prefill 512x2560", T(512, HIDDEN, **rng)),
        Case("strided 7x13", T(7, 13, layout="strided", **rng)),
        Case("one", T(1, **rng)),
        Case("empty", T(0, **rng)),
    ]


BINARY_BUGS = ("block_tail", "broadcast", "strides", "empty")
UNARY_BUGS = ("strides", "empty")


def binary(
    name: str, fn, flaggems: tuple[str, ...], tags: tuple[str, ...] = ("elementwise",), **rng
) -> OpSpec:
    return OpSpec(name, fn, cases=binary_cases(**rng), flaggems=flaggems, tags=tags, exercises=BINARY_BUGS)


def unary(
    name: str, fn, flaggems: tuple[str, ...], tags: tuple[str, ...] = ("elementwise",), **rng
) -> OpSpec:
    return OpSpec(name, fn, cases=unary_cases(**rng), flaggems=flaggems, tags=tags, exercises=UNARY_BUGS)


QWEN = ("qwen3", "elementwise")

SPECS = [
    binary("add", torch.add, ("add",), (*QWEN, "smoke")),
    binary("mul", torch.mul, ("mul",), QWEN),
    binary("sub", torch.sub, ("sub",), QWEN),
    binary("div", torch.div, ("true_divide",), QWEN, **POS),
    binary("maximum", torch.maximum, ("maximum",)),
    unary("neg", torch.neg, ("neg",), QWEN),
    unary("rsqrt", torch.rsqrt, ("rsqrt",), QWEN, **POS),
    unary("sqrt", torch.sqrt, ("sqrt",), QWEN, **POS),
    unary("exp", torch.exp, ("exp",), QWEN, low=-8.0, high=8.0),
    unary("log", torch.log, ("log",), QWEN, **POS),
    unary("abs", torch.abs, ("abs",), QWEN),
    unary("reciprocal", torch.reciprocal, ("reciprocal",), QWEN, **POS),
    unary("cos", torch.cos, ("cos",), QWEN, low=-8.0, high=8.0),
    unary("sin", torch.sin, ("sin",), QWEN, low=-8.0, high=8.0),
    unary("pow_scalar", lambda x: torch.pow(x, 2), ("pow_tensor_scalar",), QWEN),
    unary("clamp", lambda x: torch.clamp(x, -0.5, 0.5), ("clamp",), QWEN),
    unary("isfinite", torch.isfinite, ("isfinite",), QWEN),
    OpSpec(
        "add_inplace",
        lambda x, y: x.add_(y),
        cases=binary_cases()[:2] + binary_cases()[3:4],
        flaggems=("add_",),
        tags=QWEN,
        mutates=True,
    ),
    OpSpec(
        "div_temperature",
        lambda logits: logits / 0.7,
        cases=[Case("logits 8x151936", T(8, VOCAB, low=-20, high=20)), Case("one", T(1, 1))],
        flaggems=("true_divide",),
        tags=(*QWEN, "sampling"),
    ),
    OpSpec(
        "where",
        torch.where,
        cases=[
            Case("logits 8x151936", T(8, VOCAB, kind="bool"), T(8, VOCAB), T(8, VOCAB)),
            Case("broadcast 512x2560", T(512, 1, kind="bool"), T(512, HIDDEN), T(HIDDEN)),
            Case("empty", T(0, 4, kind="bool"), T(0, 4), T(0, 4)),
        ],
        flaggems=("where_self",),
        tags=QWEN,
    ),
    OpSpec(
        "masked_fill",
        lambda x, mask: x.masked_fill(mask, float("-inf")),
        cases=[
            Case("logits 8x151936", T(8, VOCAB, low=-20, high=20), T(8, VOCAB, kind="bool")),
            Case("causal 512x512", T(512, 512), T(512, 512, kind="bool")),
            Case("transposed 33x65", T(33, 65, layout="transposed"), T(33, 65, kind="bool")),
        ],
        flaggems=("masked_fill",),
        tags=(*QWEN, "sampling", "smoke"),
    ),
    OpSpec(
        "gt",
        torch.gt,
        cases=binary_cases(),
        flaggems=("gt",),
        tags=QWEN,
        compare="exact",
    ),
    OpSpec(
        "eq_scalar",
        lambda ids: torch.eq(ids, 7),
        dtypes=("int64",),
        cases=[
            Case("token ids 8x512", T(8, 512, kind="int", low=0, high=16)),
            Case("empty", T(0, kind="int", low=0, high=16)),
        ],
        flaggems=("eq_scalar",),
        tags=QWEN,
        compare="exact",
    ),
]
