"""Small fused FlagGems blocks outside aten (kernels/fused/_common.py): norms fused with an add, matmuls
fused with a bias or activation, clamped gated activations, beam-search scores, bincount, sequence
packing and the RWKV helpers. Shapes are small: each case runs on the CPU in float64 as its reference."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from portability.kernels.fused._common import WEIGHT, fused_spec, gems

from portability.spec import Case, T


def rms(x: torch.Tensor, w: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def clamped_silu_and_mul(x: torch.Tensor, y: torch.Tensor, limit: float) -> torch.Tensor:
    """silu(min(x, limit)) * clamp(y, -limit, limit) (gpt-oss style clamped SwiGLU)."""
    return F.silu(x.clamp(max=limit)) * y.clamp(-limit, limit)


def clamped_silu_and_mul_out_gems(x: torch.Tensor, y: torch.Tensor, limit: float) -> torch.Tensor:
    out = torch.empty_like(x)
    return gems("silu_and_mul_with_clamp_out")(x, y, out, limit)


def beam_scores_(log_probs: torch.Tensor, beam: torch.Tensor) -> torch.Tensor:
    return log_probs.copy_(log_probs + beam[:, None])


def beam_scores_gems_(log_probs: torch.Tensor, beam: torch.Tensor) -> torch.Tensor:
    gems("beam_search_score_")(log_probs, beam)
    return log_probs


def pack(x: torch.Tensor, lengths: Sequence[int], pad: float) -> torch.Tensor:
    """Rows of x, split into sequences of `lengths`, as a (batch, longest, dim) tensor padded with pad."""
    parts = torch.split(x, list(lengths))
    return torch.nn.utils.rnn.pad_sequence(parts, batch_first=True, padding_value=pad)


def unpack(packed: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    return torch.cat([packed[b, :n] for b, n in enumerate(lengths)])


def _lengths(like: torch.Tensor, lengths: Sequence[int]) -> torch.Tensor:
    return torch.tensor(list(lengths), device=like.device)


def rwkv_ka(k, kk, a, ka, heads: int, head_size: int):
    """RWKV-7's key/`a` fusion: k·kk normalised per head, the key rescaled by 1 + (a - 1)·ka, and the
    normalised key times a. k, a: (tokens, channels); kk, ka: (channels,)."""
    kt = (k * kk).view(*k.shape[:-1], heads, head_size)
    kt = (kt / torch.sqrt(kt.pow(2).sum(-1, keepdim=True) + 1e-12)).view_as(k)
    return k * (1 + (a - 1) * ka), kt, kt * a


LENGTHS = (3, 1, 5)
SPECS = [
    fused_spec(
        "add_rms_norm",
        "add_rms_norm",
        lambda x1, x2, w: rms(x1 + x2, w, 1e-5),
        lambda x1, x2, w: gems("add_rms_norm")(x1, x2, [x1.shape[-1]], w, 1e-5),
        cases=[
            Case("8x256", T(8, 256), T(8, 256), T(256, **WEIGHT)),
            Case("odd 3x1000", T(3, 1000), T(3, 1000), T(1000, **WEIGHT)),
        ],
        tags=("norm",),
    ),
    fused_spec(
        "fused_q_kv_rmsnorm",
        "fused_q_kv_rmsnorm",
        lambda q, kv, wq, wkv: (rms(q, wq, 1e-6), rms(kv, wkv, 1e-6)),
        lambda q, kv, wq, wkv: gems("fused_q_kv_rmsnorm")(q, kv, wq, wkv, 1e-6),
        cases=[Case("4 tokens, q 192, kv 64", T(4, 192), T(4, 64), T(192, **WEIGHT), T(64, **WEIGHT))],
        tags=("norm", "deepseek"),
    ),
    fused_spec(
        "matmuladd",
        "matmuladd",
        lambda x, w, b: x @ w + b,
        lambda x, w, b: gems("matmuladd")(x, w, b),
        cases=[Case("16x32 @ 32x24 + 16x24", T(16, 32), T(32, 24), T(16, 24))],
        atol={"fp16": 1e-2, "bf16": 5e-2},
        tags=("linear",),
    ),
    fused_spec(
        "matmul_bias_activation",
        "matmul_bias_activation",
        lambda x, w, b: torch.relu(x @ w + b),
        lambda x, w, b: gems("matmul_bias_activation")(x, w, b),
        cases=[Case("16x32 @ 32x24 + 24, relu", T(16, 32), T(32, 24), T(24))],
        atol={"fp16": 1e-2, "bf16": 5e-2},
        tags=("linear",),
    ),
    fused_spec(
        "silu_and_mul_with_clamp",
        "silu_and_mul_with_clamp",
        clamped_silu_and_mul,
        lambda x, y, limit: gems("silu_and_mul_with_clamp")(x, y, limit),
        cases=[Case("8x256, limit 2", T(8, 256, low=-4, high=4), T(8, 256, low=-4, high=4), 2.0)],
        tags=("activation",),
    ),
    fused_spec(
        "silu_and_mul_with_clamp_out",
        "silu_and_mul_with_clamp_out",
        clamped_silu_and_mul,
        clamped_silu_and_mul_out_gems,
        cases=[Case("8x256, limit 2", T(8, 256, low=-4, high=4), T(8, 256, low=-4, high=4), 2.0)],
        tags=("activation",),
    ),
    fused_spec(
        "beam_search_score",
        "beam_search_score",
        lambda lp, beam: lp + beam[:, None],
        lambda lp, beam: gems("beam_search_score")(lp, beam),
        cases=[Case("4 beams x 1000 tokens", T(4, 1000, low=-9, high=0), T(4, low=-5, high=0))],
        tags=("sampling",),
    ),
    fused_spec(
        "beam_search_score_",
        "beam_search_score_",
        beam_scores_,
        beam_scores_gems_,
        cases=[Case("4 beams x 1000 tokens", T(4, 1000, low=-9, high=0), T(4, low=-5, high=0))],
        mutates=True,
        tags=("sampling",),
    ),
    fused_spec(
        "bincount_fused",
        "bincount",
        lambda x, w: torch.bincount(x, w, minlength=40),
        lambda x, w: gems("bincount")(x, w, minlength=40),
        cases=[Case("300 ids < 32, weighted", T(300, kind="index", high=32), T(300))],
        dtypes=("fp32",),
    ),
    fused_spec(
        "pack_seq",
        "pack_seq_triton",
        lambda x, lengths: pack(x, lengths, -1.0),
        lambda x, lengths: gems("pack_seq_triton")(x, _lengths(x, lengths), -1.0),
        cases=[Case("9 rows of 16 in 3 sequences", T(sum(LENGTHS), 16), LENGTHS)],
    ),
    fused_spec(
        "unpack_seq",
        "unpack_seq_triton",
        unpack,
        lambda p, lengths: gems("unpack_seq_triton")(p, _lengths(p, lengths)),
        cases=[Case("3 sequences padded to 5 x 16", T(len(LENGTHS), max(LENGTHS), 16), LENGTHS)],
    ),
    fused_spec(
        "rwkv_ka_fusion",
        "rwkv_ka_fusion",
        lambda k, kk, a, ka: rwkv_ka(k, kk, a, ka, 4, 16),
        lambda k, kk, a, ka: gems("rwkv_ka_fusion")(k, kk, a, ka, 4, 16),
        cases=[
            Case("3 tokens, 4 heads of 16", T(3, 64), T(64), T(3, 64, low=0, high=1), T(64, low=0, high=1))
        ],
        tags=("rwkv",),
    ),
    fused_spec(
        "rwkv_mm_sparsity",
        "rwkv_mm_sparsity",
        lambda k, v: k.clamp(min=0) @ v,  # relu'd keys: about half the rows are skipped
        lambda k, v: gems("rwkv_mm_sparsity")(k.clamp(min=0), v),
        cases=[Case("k 256 @ 256x48", T(256), T(256, 48))],
        atol={"fp16": 1e-2, "bf16": 5e-2},
        tags=("rwkv",),
    ),
]
