"""A Triton-style softmax with a classic masked-lane bug: each row is processed in a power-of-two block
and the lanes past the row's end are loaded as 0.0 instead of -inf, so they add exp(0 - max) each to the
denominator. Invisible when the row's maximum dwarfs 0 (logits in [-20, 20]); wrong when values sit
near or below 0 (the masked-tail cases of kernels/qwen3/reduction.py must catch it)."""

import contextlib

import torch
from portability.backends.base import BackendAdapter


def padded_softmax(x: torch.Tensor) -> torch.Tensor:
    PaddingSoftmaxAdapter._launches += 1
    n = x.shape[-1]
    block = 1 << max(0, (n - 1).bit_length())
    pad = torch.zeros(*x.shape[:-1], block - n, dtype=x.dtype)  # the bug: other=0.0, not -inf
    padded = torch.cat([x, pad], dim=-1)
    e = torch.exp(padded - padded.amax(dim=-1, keepdim=True))
    return (e / e.sum(dim=-1, keepdim=True))[..., :n]


class PaddingSoftmaxAdapter(BackendAdapter):
    name = "paddingsoftmax"
    _launches = 0

    def implements(self, op):
        return op.name == "softmax"

    def kernel_launches(self):
        return PaddingSoftmaxAdapter._launches

    @contextlib.contextmanager
    def route(self, op):
        yield padded_softmax if op.name == "softmax" else op.fn
