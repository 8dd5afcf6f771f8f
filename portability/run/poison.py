"""Outputs start poisoned, so that an implementation leaving part of its output unwritten fails."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import Any

import torch

from portability.run.judge import flatten
from portability.spec import DTYPES

# Outputs must not start out holding stale, possibly correct, values: an implementation that leaves part
# of its output unwritten has to fail the check. Two mechanisms, both applied to the checked call only:
#
# - Accelerators (CUDA, and the other torch device allocators, which are caching allocators too):
#   `poison_allocator` fills blocks the size of each expected output with NaN (or -7 / True for
#   integer/bool outputs) and frees them. The caching allocator keeps freed blocks in its pool and hands
#   the best-fitting one to the next allocation of that size on the stream, so the backend's output
#   buffer starts as NaN.
# - CPU: freed heap memory is not reliably reused (chunks coalesce, and large buffers are fresh mmap
#   pages, zero-filled by the kernel), so `perturbed_malloc` also turns on glibc's M_PERTURB (the
#   MALLOC_PERTURB_ knob, set at run time through mallopt) for the call: every block malloc hands out is
#   filled with 0x7f bytes (NaN in fp16, 3.4e38 in fp32/bf16, huge integers): heap and mmap'd ones alike
#   (not buffers under ~1 KiB served from glibc's per-thread cache). Only around the checked
#   call, never while timing. Not glibc (macOS, musl): the block poisoning alone.
MALLOC_PERTURB_BYTE = 0x80  # glibc fills allocations with the complement: 0x7f
_M_PERTURB = -6  # mallopt parameter number (malloc.h)


@contextlib.contextmanager
def perturbed_malloc(device: str) -> Iterator[None]:
    """On a CPU device under glibc: every malloc inside the block returns memory filled with 0x7f."""
    mallopt = _mallopt() if device.split(":")[0] == "cpu" else None
    on = bool(mallopt and mallopt(_M_PERTURB, MALLOC_PERTURB_BYTE) == 1)
    try:
        yield
    finally:
        if on:
            mallopt(_M_PERTURB, 0)  # type: ignore[misc]


@lru_cache(maxsize=1)
def _mallopt() -> Callable[[int, int], int] | None:
    try:
        fn = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def poison_allocator(want: Any, device: str, dtype: str) -> None:
    """Fill, then free, device blocks the size of the expected outputs (see the comment above)."""

    for ref in flatten(want):
        if not isinstance(ref, torch.Tensor) or ref.numel() == 0:
            continue
        target = DTYPES[dtype] if ref.is_floating_point() else ref.dtype
        fill: float | int | bool = (
            float("nan") if target.is_floating_point else (True if target == torch.bool else -7)
        )
        block = torch.full(ref.shape, fill, dtype=target, device=device)
        del block
