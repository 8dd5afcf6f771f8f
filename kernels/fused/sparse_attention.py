"""DeepSeek attention kernels in FlagGems 5.3 outside aten (kernels/fused/_common.py): sparse attention over
top-k selected keys with an attention sink, MLA decode over a paged latent cache, and the sparse
indexer's paged ReLU logits. The kernels take bfloat16 (their fixed head sizes are kept: MLA 576/512,
indexer 32 heads of 128); the references are the plain softmax / ReLU sums over the gathered keys."""

from __future__ import annotations

import math

import torch
from portability.kernels.fused._common import fused_spec, gems

from portability.spec import Case, T

I32 = {"dtype": "int32"}
FP32 = {"dtype": "fp32"}


def sparse_attention(q, kv, sink, idx, scale: float = 0.125):
    """o[b, m, h] = Σ_j p_j · kv[b, idx_j] with p = softmax over the valid (idx ≥ 0) selected keys of
    scale · q·kv, whose denominator also counts exp(sink[h]) (a sink that takes weight, gives nothing)."""
    keys = kv[torch.arange(kv.shape[0], device=kv.device)[:, None, None], idx.clamp(min=0).long()]  # b m k d
    s = torch.einsum("bmhd,bmkd->bmhk", q, keys) * scale
    s = s.masked_fill((idx < 0)[:, :, None, :], float("-inf"))
    sinks = sink.to(s.dtype)[None, None, :, None].expand(*s.shape[:3], 1)
    p = torch.softmax(torch.cat([s, sinks], -1), -1)[..., :-1]
    return torch.einsum("bmhk,bmkd->bmhd", p.to(keys.dtype), keys)


# MLA decode: one query token per request, latent keys of 576 (512 values + 64 rope) in pages of 64.
MLA_D, MLA_DV, PAGE = 576, 512, 64
MLA_LENS, MLA_TABLE = (70, 130), ((3, 0, 0), (1, 4, 2))


def flash_mla(q, cache):
    """softmax(q · Kᵀ / sqrt(576)) · K[:, :512] over each request's first MLA_LENS[b] cached keys."""
    out = []
    for b, (n, pages) in enumerate(zip(MLA_LENS, MLA_TABLE, strict=True)):
        keys = cache[list(pages)].reshape(-1, MLA_D)[:n]
        p = torch.softmax(q[b, 0] @ keys.T / math.sqrt(MLA_D), -1)
        out.append(p @ keys[:, :MLA_DV])
    return torch.stack(out)[:, None]


def flash_mla_gems(q, cache):
    dev, heads = q.device, q.shape[2]
    table = torch.tensor(MLA_TABLE, dtype=torch.int32, device=dev)
    lens = torch.tensor(MLA_LENS, dtype=torch.int32, device=dev)
    blocked = cache[:, :, None, :]  # (blocks, page, kv heads = 1, 576)
    return gems("flash_mla")(
        q, table, blocked, PAGE * 3, PAGE, len(MLA_LENS), 1, lens, heads, 1, MLA_D, MLA_DV, True
    )


# The sparse indexer's logits: 32 heads of 128, keys in pages of 64.
IDX_LENS, IDX_TABLE, IDX_MAX = (70, 100), ((2, 0), (1, 3)), 128


def _valid(logits: torch.Tensor) -> torch.Tensor:
    pos = torch.arange(IDX_MAX, device=logits.device)
    return torch.where(pos[None, :] < torch.tensor(IDX_LENS, device=logits.device)[:, None], logits, 0)


def paged_mqa_logits(q, cache, weights):
    """logits[b, pos] = Σ_h relu(q[b, h] · K_b[pos]) · w[b, h] for pos < IDX_LENS[b] (0 beyond)."""
    rows = []
    for b, pages in enumerate(IDX_TABLE):
        keys = cache[list(pages)].reshape(-1, cache.shape[-1])
        rows.append((torch.relu(q[b, 0] @ keys.T) * weights[b, :, None].to(keys.dtype)).sum(0))
    return _valid(torch.stack(rows).float())


def paged_mqa_logits_gems(q, cache, weights):
    dev = q.device
    lens = torch.tensor(IDX_LENS, dtype=torch.int32, device=dev)[:, None]
    table = torch.tensor(IDX_TABLE, dtype=torch.int32, device=dev)
    logits = gems("bf16_paged_mqa_logits")(q, cache[:, :, None, :], weights, lens, table, None, IDX_MAX)
    return _valid(logits)


SPECS = [
    fused_spec(
        "sparse_attn_triton",
        "sparse_attn_triton",
        sparse_attention,
        lambda q, kv, sink, idx: gems("sparse_attn_triton")(q, kv, sink, idx, 0.125),
        cases=[
            Case(
                "5 queries x 4 heads of 64, top 8 of 32 keys",
                T(1, 5, 4, 64),
                T(1, 32, 64),
                T(4, **FP32),
                T(1, 5, 8, kind="int", low=-1, high=32, **I32),
            )
        ],
        dtypes=("bf16",),
        tags=("deepseek", "attention"),
    ),
    fused_spec(
        "flash_mla",
        "flash_mla",
        flash_mla,
        flash_mla_gems,
        cases=[Case("2 requests of 70/130 keys, 16 heads", T(2, 1, 16, MLA_D), T(5, PAGE, MLA_D))],
        dtypes=("bf16",),
        atol={"bf16": 2e-2},
        tags=("deepseek", "attention"),
    ),
    fused_spec(
        "bf16_paged_mqa_logits",
        "bf16_paged_mqa_logits",
        paged_mqa_logits,
        paged_mqa_logits_gems,
        cases=[Case("2 requests of 70/100 keys", T(2, 1, 32, 128), T(4, 64, 128), T(2, 32, **FP32))],
        dtypes=("bf16",),
        atol={"bf16": 5e-2},
        tags=("deepseek", "attention"),
    ),
]
