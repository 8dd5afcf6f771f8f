"""Activations: SiLU and the gated MLP (silu_and_mul), GELU, sigmoid, tanh."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from portability.kernels.qwen3._model import INTERMEDIATE, flag_gems_fn

from portability.spec import Case, OpSpec, T

NAN, INF = float("nan"), float("inf")


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """vLLM's SiluAndMul: x = [gate | up] on the last dim -> silu(gate) * up."""
    d = x.shape[-1] // 2
    return F.silu(x[..., :d]) * x[..., d:]


def unary(
    name: str, fn, flaggems: tuple[str, ...], tags: tuple[str, ...] = ("activation",), nonfinite: bool = True
) -> OpSpec:
    """`nonfinite=False` where torch itself disagrees between float64 and the case dtype on ±inf
    (gelu(-inf): NaN in one, 0 in the other), so no backend can be held to either."""
    special = [Case("nan/inf 33", T(33, low=-4, high=4, specials=(NAN, INF, -INF)))] if nonfinite else []
    return OpSpec(
        name,
        fn,
        cases=[
            Case("decode 8x9728", T(8, INTERMEDIATE, low=-4, high=4)),
            Case("prefill 512x9728", T(512, INTERMEDIATE, low=-4, high=4)),
            Case("transposed 33x65", T(33, 65, low=-4, high=4, layout="transposed")),
            Case("one", T(1)),
            Case("empty", T(0)),
            Case("block tail 65537", T(65537, low=-4, high=4)),
            *special,
        ],
        flaggems=flaggems,
        tags=tags,
        exercises=("block_tail", "strides", "nonfinite", "last_row", "empty"),
    )


SPECS = [
    unary("silu", F.silu, ("silu",), ("qwen3", "activation", "smoke")),
    unary("gelu", F.gelu, ("gelu",), nonfinite=False),
    unary("sigmoid", torch.sigmoid, ("sigmoid",)),
    unary("tanh", torch.tanh, ("tanh",)),
    OpSpec(
        "silu_and_mul",
        silu_and_mul,
        impls={"flaggems": lambda x: flag_gems_fn("silu_and_mul")(*x.chunk(2, -1))},
        cases=[
            Case("decode 8x19456", T(8, 2 * INTERMEDIATE, low=-4, high=4)),
            Case("prefill 512x19456", T(512, 2 * INTERMEDIATE, low=-4, high=4)),
            Case("odd 3x26", T(3, 26, low=-4, high=4)),
        ],
        tags=("qwen3", "activation", "fused"),
        exercises=("block_tail",),
    ),
]
