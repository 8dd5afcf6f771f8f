"""`tritonchip`: the walk of docs/adding-a-backend.md redone with a tiny Triton kernel library (add, silu,
softmax, rms_norm), run on the CPU through Triton's interpreter (TRITON_INTERPRET=1, set by matrix.yaml).

rms_norm is deliberately left out of `route()` while `implements()` still claims it (the mistake the
issue found scored as `rms_norm ✓`): its launch count does not rise during the call, so every rms_norm
case is `fallback` (ran native torch, not tritonchip). Every other operator is declared not its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
import triton
import triton.language as tl
from portability.backends.base import BackendAdapter

from portability.spec import OpSpec

_LAUNCHES = 0
BLOCK = 4096


def _launched() -> None:
    """Every call of a tritonchip function counts, an empty one (no kernel needed) included."""
    global _LAUNCHES
    _LAUNCHES += 1


@triton.jit
def _add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    tl.store(out_ptr + offs, tl.load(x_ptr + offs, mask=mask) + tl.load(y_ptr + offs, mask=mask), mask=mask)


@triton.jit
def _silu_kernel(x_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask).to(tl.float32)
    tl.store(out_ptr + offs, x / (1.0 + tl.exp(-x)), mask=mask)


@triton.jit
def _softmax_kernel(x_ptr, out_ptr, cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    mask = offs < cols
    x = tl.load(x_ptr + row * cols + offs, mask=mask, other=-float("inf")).to(tl.float32)
    e = tl.exp(x - tl.max(x, axis=0))
    tl.store(out_ptr + row * cols + offs, e / tl.sum(e, axis=0), mask=mask)


def add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    _launched()
    x, y = torch.broadcast_tensors(x, y)
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty_like(x)
    if x.numel():
        _add_kernel[(triton.cdiv(x.numel(), BLOCK),)](x, y, out, x.numel(), BLOCK=BLOCK)
    return out


def silu(x: torch.Tensor) -> torch.Tensor:
    _launched()
    x = x.contiguous()
    out = torch.empty_like(x)
    if x.numel():
        _silu_kernel[(triton.cdiv(x.numel(), BLOCK),)](x, out, x.numel(), BLOCK=BLOCK)
    return out


def softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    _launched()
    x = x.contiguous()
    out = torch.empty_like(x)
    cols = x.shape[-1] if x.dim() else 1
    if x.numel():
        block = triton.next_power_of_2(cols)
        _softmax_kernel[(x.numel() // cols,)](x, out, cols, BLOCK=block)
    return out


OWN: dict[str, Callable[..., torch.Tensor]] = {
    "add": lambda x, y: add(x, y),
    "silu": silu,
    "softmax": lambda x: softmax(x, -1),
}


class TritonChipAdapter(BackendAdapter):
    name = "tritonchip"
    description = "a tiny Triton kernel library (interpreted on the CPU)"

    def supported_dtypes(self) -> set[str]:
        return {"fp32"}

    def implements(self, op: OpSpec) -> bool:
        return op.name in (*OWN, "rms_norm")  # rms_norm claimed, but never routed below

    def kernel_launches(self) -> int:
        return _LAUNCHES

    @contextlib.contextmanager
    def route(self, op: OpSpec) -> Iterator[Callable[..., Any]]:
        yield OWN.get(op.name, op.fn)
