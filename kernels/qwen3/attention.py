"""Attention on the Qwen3-4B path: rotary position embedding (NeoX style) and causal GQA attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from portability.kernels.qwen3._model import HEAD_DIM, KV_HEADS, Q_HEADS, flag_gems_fn

from portability.spec import Case, OpSpec, T

MAX_POS = 4096


def rotary_embedding(q, k, cos, sin, positions):
    """NeoX-style rotary embedding as Qwen3 uses it: rotate the two halves of each head by the angle
    of each token's position. q: (tokens, 32, 128), k: (tokens, 8, 128), cos/sin: (max_pos, 64)."""
    c, s = cos[positions].unsqueeze(-2), sin[positions].unsqueeze(-2)

    def rotate(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)

    return rotate(q), rotate(k)


def rope_case(name: str, tokens: int) -> Case:
    return Case(
        name,
        T(tokens, Q_HEADS, HEAD_DIM),
        T(tokens, KV_HEADS, HEAD_DIM),
        T(MAX_POS, HEAD_DIM // 2),
        T(MAX_POS, HEAD_DIM // 2),
        T(tokens, kind="index", low=0, high=MAX_POS),
    )


def sdpa_flops(case, dtype, out) -> int:
    q, k = case.args[0].shape, case.args[1].shape
    causal = 0.5 if q[-2] == k[-2] and q[-2] > 1 else 1.0
    return int(4 * q[0] * q[1] * q[-2] * k[-2] * q[-1] * causal)


def sdpa(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=q.shape[-2] > 1, enable_gqa=True)


def sdpa_reference(q, k, v):
    """Plain-math attention (float64 on the CPU): softmax(q·kᵀ/√d + causal mask)·v, kv heads repeated."""
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    if q.shape[-2] > 1:
        mask = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril(k.shape[-2] - q.shape[-2])
        scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


SPECS = [
    OpSpec(
        "rotary_embedding",
        rotary_embedding,
        impls={
            "flaggems": lambda q, k, cos, sin, pos: flag_gems_fn("apply_rotary_pos_emb")(q, k, cos, sin, pos)
        },
        cases=[
            rope_case("decode 8 tokens", 8),
            rope_case("prefill 512 tokens", 512),
            rope_case("one token", 1),
        ],
        tags=("qwen3", "attention", "fused"),
    ),
    OpSpec(
        "scaled_dot_product_attention",
        sdpa,
        ref=sdpa_reference,
        impls={
            "flaggems": lambda q, k, v: flag_gems_fn("scaled_dot_product_attention")(
                q, k, v, is_causal=q.shape[-2] > 1, enable_gqa=True
            )
        },
        cases=[
            Case(
                "prefill causal 1x32x512x128",
                T(1, Q_HEADS, 512, HEAD_DIM),
                T(1, KV_HEADS, 512, HEAD_DIM),
                T(1, KV_HEADS, 512, HEAD_DIM),
            ),
            Case(
                "decode 8x32x1x128 over 1024",
                T(8, Q_HEADS, 1, HEAD_DIM),
                T(8, KV_HEADS, 1024, HEAD_DIM),
                T(8, KV_HEADS, 1024, HEAD_DIM),
            ),
        ],
        tags=("qwen3", "attention"),
        flops=sdpa_flops,
        dtypes=("fp16", "bf16", "fp32"),
    ),
]
