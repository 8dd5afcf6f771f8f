"""Fused gated activations (x = [a | b]) and their backward kernels (see kernels/_fused.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from portability.kernels._fused import (
    VLLM,
    fused_spec,
    gems,
    halves,
)
from portability.kernels._qwen3 import INTERMEDIATE

from portability.spec import Case, T

# ---------------------------------------------------------------- gated activations (x = [a | b])

GELU_C = math.sqrt(2 / math.pi)


def gelu_tanh(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * a * (1 + torch.tanh(GELU_C * (a + 0.044715 * a**3)))


def d_silu(a: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s + a * s * (1 - s)


def d_gelu_tanh(a: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(GELU_C * (a + 0.044715 * a**3))
    return 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * a * a)


ACTS: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    "swiglu": (F.silu, d_silu),
    "geglu": (gelu_tanh, d_gelu_tanh),  # FlagGems' geglu is the tanh approximation
    "reglu": (F.relu, lambda a: (a > 0).to(a.dtype)),
}


def glu_forward(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        a, b = halves(x)
        return ACTS[kind][0](a) * b

    return fn


def glu_backward(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """d/dx of act(a) * b, for x = [a | b]: [grad * b * act'(a) | grad * act(a)] (FlagGems' d<kind>)."""

    def fn(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        act, dact = ACTS[kind]
        a, b = halves(x)
        return torch.cat([grad * b * dact(a), grad * act(a)], dim=-1)

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
