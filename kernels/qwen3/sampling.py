"""Sampling-path compositions: top-p (nucleus) masking as vLLM's sampler computes it."""

from __future__ import annotations

import torch
from portability.kernels.qwen3._model import VOCAB

from portability.spec import Case, OpSpec, T


def top_p_mask(logits: torch.Tensor, p: float = 0.9) -> torch.Tensor:
    """Masked logits: keep the smallest set of top tokens whose probability mass reaches p."""
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
    cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
    drop = cum <= 1 - p
    drop[..., -1] = False
    masked = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(masked).scatter_(-1, order, masked)


SPECS = [
    OpSpec(
        "top_p_mask",
        top_p_mask,
        # One operator chain: compared only at fp32, where the cut point is not at the mercy of rounding.
        dtypes=("fp32",),
        cases=[Case("logits 8x151936", T(8, VOCAB, low=-20, high=20)), Case("odd 3x1001", T(3, 1001))],
        flaggems=("sort", "softmax", "cumsum", "masked_fill", "scatter_", "le_scalar"),
        tags=("qwen3", "sampling"),
    ),
]
