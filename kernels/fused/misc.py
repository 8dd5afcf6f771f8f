"""Rotary embedding in place on the qkv output, and the other fused FlagGems operators (fused/_common.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from portability.kernels.fused._common import (
    VLLM,
    WEIGHT,
    fused_spec,
    gems,
)
from portability.kernels.qwen3._model import HEAD_DIM, HIDDEN, KV_HEADS, Q_HEADS, VOCAB
from portability.kernels.qwen3.attention import MAX_POS, rope_case, rotary_embedding

from portability.spec import Case, T

# ---------------------------------------------------------------- rotary embedding, in place on qkv

QKV = (Q_HEADS + 2 * KV_HEADS) * HEAD_DIM  # 6144: the fused q/k/v projection's output width


def _qk_views(qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """q and k as vLLM hands them to the rotary embedding: strided views into the qkv projection."""
    q_end, k_end = Q_HEADS * HEAD_DIM, (Q_HEADS + KV_HEADS) * HEAD_DIM
    return qkv[:, :q_end].view(-1, Q_HEADS, HEAD_DIM), qkv[:, q_end:k_end].view(-1, KV_HEADS, HEAD_DIM)


def rope_qkv(qkv, cos_sin, positions):
    """NeoX rotary embedding of the q and k parts of qkv, in place (v untouched); cos_sin is vLLM's
    cos_sin_cache (max_pos, head_dim) = [cos | sin]."""
    q, k = _qk_views(qkv)
    rq, rk = rotary_embedding(q, k, *cos_sin.chunk(2, dim=-1), positions)
    q.copy_(rq)
    k.copy_(rk)
    return qkv


def rope_qkv_gems(qkv, cos_sin, positions):
    """As vllm-plugin-FL's rotary_embedding_flaggems calls it: gems_rope_forward(..., inplace=True)."""
    q, k = _qk_views(qkv)
    cos, sin = cos_sin.chunk(2, dim=-1)
    gems("modules.rotary_embedding.gems_rope_forward")(
        q, k, cos, sin, position_ids=positions, rotary_interleaved=False, inplace=True
    )
    return qkv


def rope_qkv_case(name: str, tokens: int) -> Case:
    return Case(name, T(tokens, QKV), T(MAX_POS, HEAD_DIM), T(tokens, kind="index", low=0, high=MAX_POS))


# ---------------------------------------------------------------- everything else


def rotary_interleaved(q, k, cos, sin, positions):
    """GPT-J style rotary embedding: pairs (x[2i], x[2i+1]) rotated by the angle of pair i."""
    c, s = cos[positions].unsqueeze(-2), sin[positions].unsqueeze(-2)

    def rotate(x):
        even, odd = x[..., 0::2], x[..., 1::2]
        return torch.stack([even * c - odd * s, odd * c + even * s], dim=-1).flatten(-2)

    return rotate(q), rotate(k)


def weight_norm(v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """w = g * v / ||v||, the norm over every dimension but 0 (torch.nn.utils.weight_norm, dim=0)."""
    norm = v.flatten(1).norm(dim=1).view(-1, *([1] * (v.dim() - 1)))
    return v * (g / norm)


def apply_repetition_penalties(logits, prompt_mask, output_mask, penalties) -> torch.Tensor:
    """vLLM's repetition penalty, in place: tokens seen in the prompt or output get positive logits
    divided by the sequence's penalty and the others multiplied by it."""
    p = penalties[:, None]
    seen = prompt_mask | output_mask
    return logits.copy_(torch.where(seen, torch.where(logits > 0, logits / p, logits * p), logits))


def apply_repetition_penalties_gems(logits, prompt_mask, output_mask, penalties) -> torch.Tensor:
    gems("apply_repetition_penalties")(logits, prompt_mask, output_mask, penalties)  # returns None
    return logits


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    return F.cross_entropy(logits, target, reduction=reduction, label_smoothing=label_smoothing)


SPECS = [
    fused_spec(
        "rotary_embedding_inplace",
        "modules.rotary_embedding.gems_rope_forward",
        rope_qkv,
        rope_qkv_gems,
        cases=[rope_qkv_case("decode 8 tokens", 8), rope_qkv_case("prefill 512 tokens", 512)],
        mutates=True,
        tags=(*VLLM, "qwen3", "attention"),
    ),
    fused_spec(
        "rotary_embedding_interleaved",
        "apply_rotary_pos_emb",
        rotary_interleaved,
        lambda q, k, cos, sin, pos: gems("apply_rotary_pos_emb")(
            q, k, cos, sin, pos, rotary_interleaved=True
        ),
        cases=[rope_case("decode 8 tokens", 8), rope_case("prefill 512 tokens", 512)],
        tags=("attention",),
    ),
    fused_spec(
        "skip_layer_norm",
        "skip_layer_norm",
        lambda x, r, w, b: F.layer_norm(x + r, (x.shape[-1],), w, b, 1e-5),
        lambda x, r, w, b: gems("skip_layer_norm")(x, r, [x.shape[-1]], w, b, 1e-5),
        cases=[
            Case("decode 8x2560", T(8, HIDDEN), T(8, HIDDEN), T(HIDDEN, **WEIGHT), T(HIDDEN)),
            Case("prefill 512x2560", T(512, HIDDEN), T(512, HIDDEN), T(HIDDEN, **WEIGHT), T(HIDDEN)),
            Case("odd 3x1000", T(3, 1000), T(3, 1000), T(1000, **WEIGHT), T(1000)),
        ],
        tags=("norm",),
    ),
    fused_spec(
        "weight_norm",
        "weight_norm",
        weight_norm,
        lambda v, g: gems("weight_norm")(v, g, 0),
        cases=[
            Case("2560x2560", T(HIDDEN, HIDDEN), T(HIDDEN, 1, **WEIGHT)),
            Case("conv 64x32x3x3", T(64, 32, 3, 3), T(64, 1, 1, 1, **WEIGHT)),
            Case("odd 7x13", T(7, 13), T(7, 1, **WEIGHT)),
        ],
        tags=("norm",),
    ),
    fused_spec(
        "instance_norm",
        "instance_norm",
        lambda x, w, b: F.instance_norm(x, weight=w, bias=b, eps=1e-5),
        lambda x, w, b: gems("instance_norm")(x, w, b, None, None, True, 0.1, 1e-5, False),
        cases=[
            Case("4x64x1024", T(4, 64, 1024), T(64, **WEIGHT), T(64)),
            Case("image 2x16x32x32", T(2, 16, 32, 32), T(16, **WEIGHT), T(16)),
            Case("odd 3x5x7", T(3, 5, 7), T(5, **WEIGHT), T(5)),
        ],
        tags=("norm",),
    ),
    fused_spec(
        "outer",
        "outer",
        torch.outer,
        lambda a, b: gems("outer")(a, b),
        cases=[
            Case("2560x2560", T(HIDDEN), T(HIDDEN)),
            Case("odd 7x13", T(7), T(13)),
        ],
        tags=("matmul",),
    ),
    fused_spec(
        "cross_entropy_loss",
        "cross_entropy_loss",
        cross_entropy,
        lambda logits, target, reduction="mean", label_smoothing=0.0: gems("cross_entropy_loss")(
            logits, target, None, reduction, -100, label_smoothing
        ),
        cases=[
            Case("logits 8x151936", T(8, VOCAB, low=-10, high=10), T(8, kind="index", high=VOCAB)),
            Case(
                "logits 64x151936, sum",
                T(64, VOCAB, low=-10, high=10),
                T(64, kind="index", high=VOCAB),
                reduction="sum",
            ),
            Case("odd 3x1001, none", T(3, 1001), T(3, kind="index", high=1001), reduction="none"),
            Case(
                "label smoothing 0.1, 7x50",
                T(7, 50),
                T(7, kind="index", high=50),
                label_smoothing=0.1,
            ),
        ],
        tags=("qwen3", "loss"),
    ),
    fused_spec(
        "apply_repetition_penalties",
        "apply_repetition_penalties",
        apply_repetition_penalties,
        apply_repetition_penalties_gems,
        cases=[
            Case(
                "logits 8x151936",
                T(8, VOCAB, low=-10, high=10),
                T(8, VOCAB, kind="bool"),
                T(8, VOCAB, kind="bool"),
                T(8, low=1.0, high=2.0),
            ),
            Case(
                "odd 3x1001",
                T(3, 1001),
                T(3, 1001, kind="bool"),
                T(3, 1001, kind="bool"),
                T(3, low=1, high=2),
            ),
        ],
        mutates=True,
        tags=("qwen3", "sampling"),
    ),
]
