"""ExampleAdapter: three aten CPU kernels replaced, for the duration of a routed operator."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from portability.backends.base import BackendAdapter

from portability.spec import OpSpec

_LAUNCHES = 0


def _counted(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def kernel(*args: Any, **kwargs: Any) -> torch.Tensor:
        global _LAUNCHES
        _LAUNCHES += 1
        return fn(*args, **kwargs)

    return kernel


def _add(a: torch.Tensor, b: torch.Tensor, *, alpha: float = 1) -> torch.Tensor:
    return torch.sub(a, torch.mul(b, alpha).neg())  # sub/mul/neg: not the kernel being replaced


def _silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _softmax(x: torch.Tensor, dim: int, half_to_float: bool) -> torch.Tensor:
    shifted = x - x.amax(dim, keepdim=True)
    e = shifted.exp()
    return e / e.sum(dim, keepdim=True)


KERNELS = {"add": ("add.Tensor", _add), "silu": ("silu", _silu), "softmax": ("_softmax", _softmax)}


class ExampleAdapter(BackendAdapter):
    name = "example"
    description = "plain-PyTorch kernels registered over aten's CPU kernels (an out-of-tree example)"

    def supported_dtypes(self) -> set[str]:
        return {"fp32", "fp16", "bf16"}

    def unsupported_reason(self, op: OpSpec) -> str | None:
        return None if op.name in KERNELS else "the example backend implements add, silu and softmax only"

    def implements(self, op: OpSpec) -> bool:
        """Its own kernels: add, silu, softmax (every other operator is refused, see unsupported_reason)."""
        return op.name in KERNELS

    def kernel_launches(self) -> int:
        return _LAUNCHES

    @contextlib.contextmanager
    def route(self, op: OpSpec) -> Iterator[Callable[..., Any]]:
        aten_name, kernel = KERNELS[op.name]
        lib = torch.library.Library("aten", "IMPL")
        lib.impl(aten_name, _counted(kernel), "CPU")
        try:
            yield op.fn
        finally:
            lib._destroy()
