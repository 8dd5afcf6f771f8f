"""Fused gated activations (x = [a | b]) and their backward kernels (see kernels/fused/_common.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from portability.kernels.fused._common import (
    VLLM,
    fused_spec,
    gems,
    halves,
)
from portability.kernels.qwen3._model import INTERMEDIATE

from portability.spec import Case, T

# ---------------------------------------------------------------- gated activations (x = [a | b])


def gelu_tanh(a: torch.Tensor) -> torch.Tensor:
    # torch's own kernel computes in float32 for fp16/bf16 inputs and rounds once; spelling the formula out
    # in torch ops rounds after each of its ten steps (seen: 981/77824 fp16 elements off on native torch)
    return F.gelu(a, approximate="tanh")


# Activation and its backward as torch's autograd runs them: `backward(g, a)` = g · act'(a), through the
# aten backward kernels, which compute in float32 for fp16/bf16 and round once.
ACTS: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    "swiglu": (F.silu, torch.ops.aten.silu_backward),
    "geglu": (  # FlagGems' geglu is the tanh approximation
        gelu_tanh,
        lambda g, a: torch.ops.aten.gelu_backward(g, a, approximate="tanh"),
    ),
    "reglu": (F.relu, lambda g, a: torch.ops.aten.threshold_backward(g, a, 0)),
}


def glu_forward(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        a, b = halves(x)
        return ACTS[kind][0](a) * b

    return fn


def glu_backward(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """d/dx of act(a) * b, for x = [a | b]: [grad * b * act'(a) | grad * act(a)] (FlagGems' d<kind>)."""

    def fn(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        act, backward = ACTS[kind]
        a, b = halves(x)
        return torch.cat([backward(grad * b, a), grad * act(a)], dim=-1)

    return fn


def gelu_and_mul(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """vLLM's GeluAndMul: x = [gate | up] -> gelu(gate) * up."""
    a, b = halves(x)
    return F.gelu(a, approximate=approximate) * b


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    a, b = halves(x)
    return F.silu(a) * b


def silu_and_mul_out_gems(x: torch.Tensor) -> torch.Tensor:
    a, b = halves(x)
    out = torch.empty(a.shape, dtype=x.dtype, device=x.device)
    gems("silu_and_mul_out")(a, b, out)
    return out


def gated(n: int, **kw: Any) -> list[Case]:
    """[a | b] inputs: batched decode and prefill at Qwen3-4B's MLP width, and a small odd one."""
    return [
        Case(f"decode 8x{2 * n}", T(8, 2 * n, low=-4, high=4), **kw),
        Case(f"prefill 512x{2 * n}", T(512, 2 * n, low=-4, high=4), **kw),
        Case("odd 3x26", T(3, 26, low=-4, high=4), **kw),
    ]


def glu_backward_cases() -> list[Case]:
    return [
        Case(f"decode 8x{2 * INTERMEDIATE}", T(8, INTERMEDIATE), T(8, 2 * INTERMEDIATE, low=-4, high=4)),
        Case("odd 3x26", T(3, 13), T(3, 26, low=-4, high=4)),
    ]


SPECS = [
    fused_spec(
        "gelu_and_mul",
        "gelu_and_mul",
        gelu_and_mul,
        lambda x, approximate="none": gems("gelu_and_mul")(*halves(x), approximate),
        cases=[*gated(INTERMEDIATE), Case("tanh decode 8x19456", T(8, 2 * INTERMEDIATE), approximate="tanh")],
        tags=(*VLLM, "activation"),
    ),
    fused_spec(
        "silu_and_mul_out",
        "silu_and_mul_out",
        silu_and_mul,
        silu_and_mul_out_gems,
        cases=[gated(INTERMEDIATE)[0], gated(INTERMEDIATE)[2]],
        tags=("qwen3", "activation"),
    ),
    *[
        fused_spec(
            kind, kind, glu_forward(kind), gems(kind), cases=gated(INTERMEDIATE)[::2], tags=("activation",)
        )
        for kind in ACTS
    ],
    *[
        fused_spec(f"d{kind}", f"d{kind}", glu_backward(kind), gems(f"d{kind}"), cases=glu_backward_cases())
        for kind in ACTS
    ],
]
