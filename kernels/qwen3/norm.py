"""Normalisation on the Qwen3-4B path: RMSNorm (per layer and per head for q/k), fused add+RMSNorm."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from portability.kernels.qwen3._model import HEAD_DIM, HIDDEN, KV_HEADS, RMS_EPS, flag_gems_fn

from portability.spec import Case, OpSpec, T


def rms_norm(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return F.rms_norm(x, (x.shape[-1],), w, RMS_EPS)


def fused_add_rms_norm(x: torch.Tensor, residual: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """vLLM's contract: residual <- x + residual; x <- rms_norm(residual) * w; returns both."""
    summed = x + residual
    return F.rms_norm(summed, (x.shape[-1],), w, RMS_EPS), summed


WEIGHT = {"low": 0.5, "high": 1.5}
NAN, INF = float("nan"), float("inf")

SPECS = [
    OpSpec(
        "rms_norm",
        rms_norm,
        cases=[
            Case("decode 8x2560", T(8, HIDDEN), T(HIDDEN, **WEIGHT)),
            Case("prefill 512x2560", T(512, HIDDEN), T(HIDDEN, **WEIGHT)),
            Case("q/k heads 512x8x128", T(512, KV_HEADS, HEAD_DIM), T(HEAD_DIM, **WEIGHT)),
            Case("strided 7x13", T(7, 13, layout="strided"), T(13, **WEIGHT)),
            Case("empty 0x2560", T(0, HIDDEN), T(HIDDEN, **WEIGHT)),
            # A row one past a power of two: a kernel dividing by its block size instead of the row
            # length, or reading past the row, is off. 65,537 squares of values in [-1, 1) sum to ~21,800,
            # where fp16's spacing is 16: accumulating in fp16 loses most addends.
            Case("block tail 3x4097", T(3, 4097), T(4097, **WEIGHT)),
            Case("long row 2x65537", T(2, 65537), T(65537, **WEIGHT)),
            Case("nan/inf 4x33", T(4, 33, specials=(NAN, INF)), T(33, **WEIGHT)),
        ],
        flaggems=("rms_norm",),
        tags=("qwen3", "norm", "smoke"),
        exercises=("block_tail", "long_reduction", "strides", "nonfinite", "last_row", "empty"),
    ),
    OpSpec(
        "fused_add_rms_norm",
        fused_add_rms_norm,
        impls={
            "flaggems": lambda x, r, w: flag_gems_fn("fused_add_rms_norm")(
                x.clone(), r.clone(), [x.shape[-1]], w, RMS_EPS
            )
        },
        cases=[
            Case("decode 8x2560", T(8, HIDDEN), T(8, HIDDEN), T(HIDDEN, **WEIGHT)),
            Case("prefill 512x2560", T(512, HIDDEN), T(512, HIDDEN), T(HIDDEN, **WEIGHT)),
            Case("odd 3x1000", T(3, 1000), T(3, 1000), T(1000, **WEIGHT)),
        ],
        tags=("qwen3", "norm", "fused"),
        exercises=("block_tail",),
    ),
    OpSpec(
        "layer_norm",
        lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, 1e-5),
        cases=[
            Case("prefill 512x2560", T(512, HIDDEN), T(HIDDEN, **WEIGHT), T(HIDDEN)),
            Case("odd 7x13", T(7, 13), T(13, **WEIGHT), T(13)),
        ],
        flaggems=("layer_norm",),
        tags=("norm",),
    ),
]
