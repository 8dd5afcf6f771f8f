"""Matrix products on the Qwen3-4B path: attention/MLP projections, lm_head, batched products."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from portability.kernels.qwen3._model import HEAD_DIM, HIDDEN, INTERMEDIATE, KV_HEADS, Q_HEADS, VOCAB

from portability.spec import Case, OpSpec, T

QKV = (Q_HEADS + 2 * KV_HEADS) * HEAD_DIM  # 6144: fused q/k/v projection width
# fp32 products may run on tensor cores in TF32 (Triton's default for tl.dot, and a common vendor default):
# accept TF32-level error (~1e-3 relative to the dot product's magnitude) rather than flag it as wrong.
MATMUL_ATOL = {"fp32": 5e-3, "fp16": 2e-2, "bf16": 1e-1}
MATMUL_RTOL = {"fp32": 2e-3, "fp16": 2e-3, "bf16": 1.6e-2}
TAGS = ("qwen3", "matmul")

SPECS = [
    OpSpec(
        "mm",
        torch.mm,
        cases=[
            Case("decode 8x2560x6144 (qkv)", T(8, HIDDEN), T(HIDDEN, QKV)),
            Case("prefill 512x2560x9728 (up)", T(512, HIDDEN), T(HIDDEN, INTERMEDIATE)),
            Case("odd 7x13x5", T(7, 13), T(13, 5)),
            Case("transposed 64x96x32", T(64, 96), T(96, 32, layout="transposed")),
            Case("empty 0x64x32", T(0, 64), T(64, 32)),
        ],
        flaggems=("mm",),
        tags=(*TAGS, "smoke"),
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        flops=lambda c, d, out: 2 * out.numel() * c.args[0].shape[1],
    ),
    OpSpec(
        "addmm",
        lambda bias, a, b: torch.addmm(bias, a, b),
        cases=[
            Case("decode 1x2560x6144", T(QKV), T(1, HIDDEN), T(HIDDEN, QKV)),
            Case("prefill 512x9728x2560 (down)", T(HIDDEN), T(512, INTERMEDIATE), T(INTERMEDIATE, HIDDEN)),
            Case("odd 3x17x9", T(9), T(3, 17), T(17, 9)),
        ],
        flaggems=("addmm",),
        tags=TAGS,
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        flops=lambda c, d, out: 2 * out.numel() * c.args[1].shape[1],
    ),
    OpSpec(
        "bmm",
        torch.bmm,
        cases=[
            Case("scores 32x1x128x512", T(Q_HEADS, 1, HEAD_DIM), T(Q_HEADS, HEAD_DIM, 512)),
            Case("prefill 32x512x128x512", T(Q_HEADS, 512, HEAD_DIM), T(Q_HEADS, HEAD_DIM, 512)),
            Case("transposed 4x33x65x17", T(4, 33, 65), T(4, 65, 17, layout="transposed")),
        ],
        flaggems=("bmm",),
        tags=TAGS,
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        flops=lambda c, d, out: 2 * out.numel() * c.args[0].shape[2],
    ),
    OpSpec(
        "linear",
        F.linear,
        cases=[
            Case("lm_head 8x2560x151936", T(8, HIDDEN), T(VOCAB, HIDDEN)),
            Case("o_proj 512x4096x2560", T(512, Q_HEADS * HEAD_DIM), T(HIDDEN, Q_HEADS * HEAD_DIM)),
            Case("one 1x1x1", T(1, 1), T(1, 1)),
        ],
        flaggems=("mm", "addmm"),
        tags=TAGS,
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        flops=lambda c, d, out: 2 * out.numel() * c.args[0].shape[-1],
    ),
]
# Decode GEMV shapes for the MLP, sharing the mm spec's family name with a distinct op name.
SPECS.append(
    OpSpec(
        "mm_decode_mlp",
        torch.mm,
        cases=[
            Case("decode 1x2560x19456 (gate_up)", T(1, HIDDEN), T(HIDDEN, 2 * INTERMEDIATE)),
            Case("decode 8x9728x2560 (down)", T(8, INTERMEDIATE), T(INTERMEDIATE, HIDDEN)),
        ],
        flaggems=("mm",),
        tags=TAGS,
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        flops=lambda c, d, out: 2 * out.numel() * c.args[0].shape[1],
    )
)
