"""Copies, casts and tensor creation: dtype conversions around the model, contiguous copies, fills."""

from __future__ import annotations

import torch
from portability.kernels.qwen3._model import HEAD_DIM, HIDDEN, Q_HEADS, VOCAB

from portability.spec import Case, OpSpec, T

QWEN = ("qwen3", "copy")


def cast(name: str, target: torch.dtype, dtypes: tuple[str, ...]) -> OpSpec:
    return OpSpec(
        name,
        lambda x: x.to(target),
        dtypes=dtypes,
        cases=[
            Case("logits 8x151936", T(8, VOCAB, low=-20, high=20)),
            Case("transposed 33x65", T(33, 65, layout="transposed")),
            Case("empty", T(0, 4)),
        ],
        flaggems=("to_copy",),
        tags=QWEN,
    )


SPECS = [
    cast("to_fp32", torch.float32, ("fp16", "bf16")),
    cast("to_bf16", torch.bfloat16, ("fp32", "fp16")),
    OpSpec(
        "contiguous",
        lambda x: x.transpose(0, 1).contiguous(),
        cases=[
            Case("heads-major 512x32x128", T(512, Q_HEADS, HEAD_DIM)),
            Case("odd 7x13", T(7, 13)),
        ],
        flaggems=("copy_",),
        tags=QWEN,
    ),
    OpSpec(
        "copy_",
        lambda dst, src: dst.copy_(src),
        cases=[
            Case("kv cache write 512x2560", T(512, HIDDEN), T(512, HIDDEN)),
            Case("transposed source 33x65", T(33, 65), T(33, 65, layout="transposed")),
        ],
        flaggems=("copy_",),
        tags=(*QWEN, "smoke"),
        mutates=True,
    ),
    OpSpec(
        "fill_",
        lambda x: x.fill_(0.25),
        cases=[Case("prefill 512x2560", T(512, HIDDEN)), Case("strided 7x13", T(7, 13, layout="strided"))],
        flaggems=("fill_scalar_",),
        tags=QWEN,
        mutates=True,
    ),
    OpSpec(
        "zeros_like",
        torch.zeros_like,
        cases=[Case("prefill 512x2560", T(512, HIDDEN)), Case("empty", T(0))],
        flaggems=("zeros_like",),
        tags=QWEN,
    ),
    OpSpec(
        "full",
        lambda x: torch.full(x.shape, -1.5, dtype=x.dtype, device=x.device),
        cases=[Case("logits 8x151936", T(8, VOCAB)), Case("one", T(1))],
        flaggems=("full",),
        tags=QWEN,
    ),
    OpSpec(
        "arange",
        lambda x: torch.arange(x.shape[-1], device=x.device, dtype=torch.int64),
        dtypes=("int64",),
        cases=[Case("positions 512", T(1, 512, kind="int")), Case("vocab 151936", T(1, VOCAB, kind="int"))],
        flaggems=("arange",),
        tags=QWEN,
        compare="exact",
    ),
    OpSpec(
        "stack",
        lambda a, b: torch.stack([a, b], dim=0),
        cases=[Case("k/v 512x1024", T(512, 1024), T(512, 1024)), Case("odd 3x5", T(3, 5), T(3, 5))],
        flaggems=("stack",),
        tags=QWEN,
    ),
]
