"""Fused FlagGems routing and MoE-expert functions outside aten that 5.3.x adds (kernels/fused/_common.py):
DeepSeek-style grouped top-k and softplus-sqrt gating, per-row top-k of the sparse-attention indexer, and
the forms of the fused-experts path (the allocating alignment, in-place/impl experts, the raw kernel
launchers). Routing results are compared as dense (tokens, experts) weight matrices: the order of the k
chosen experts is left free by every caller."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from portability.kernels.fused._common import MOE, VLLM, fused_spec, gems
from portability.kernels.fused.moe import (
    _canonical_alignment,
    aligned_by_expert,
    fused_experts,
    moe_align_block_size,
    moe_cases_experts,
)
from portability.kernels.qwen3.linear import MATMUL_ATOL, MATMUL_RTOL

from portability.spec import Case, T


def dense(weights: torch.Tensor, ids: torch.Tensor, n: int) -> torch.Tensor:
    """(tokens, k) weights at expert ids -> (tokens, n), zeros elsewhere: independent of the k order."""
    return torch.zeros(ids.shape[0], n, dtype=weights.dtype, device=weights.device).scatter(
        1, ids.long(), weights
    )


def grouped_topk(scores, bias, n_group: int, topk_group: int, topk: int, scale: float, sigmoid: bool):
    """DeepSeek-V3 routing: experts scored (sigmoid optional) plus a correction bias; groups ranked by the
    sum of their two best biased scores; the top-k biased experts of the best topk_group groups chosen;
    their unbiased scores renormalised to sum to 1 and scaled."""
    s = torch.sigmoid(scores) if sigmoid else scores
    biased = s + bias
    t, e = s.shape
    group_score = biased.view(t, n_group, -1).topk(2, dim=-1).values.sum(-1)
    keep = torch.zeros_like(group_score).scatter(1, group_score.topk(topk_group, dim=-1).indices, 1.0)
    mask = keep[:, :, None].expand(t, n_group, e // n_group).reshape(t, e) > 0
    ids = biased.masked_fill(~mask, float("-inf")).topk(topk, dim=-1).indices
    w = s.gather(1, ids)
    return dense(w / w.sum(-1, keepdim=True) * scale, ids, e)


def grouped_topk_gems(scores, bias, n_group, topk_group, topk, scale, sigmoid):
    w, ids = gems("grouped_topk")(scores, n_group, topk_group, topk, True, scale, bias, int(sigmoid))
    return dense(w.to(scores.dtype), ids, scores.shape[1])


def softplus_sqrt_topk(gating, bias, topk: int, scale: float):
    """sqrt(softplus(logits)) scores, the top-k of score + bias chosen, their unbiased scores
    renormalised and scaled."""
    s = torch.sqrt(F.softplus(gating))
    ids = (s + bias).topk(topk, dim=-1).indices
    w = s.gather(1, ids)
    return dense(w / w.sum(-1, keepdim=True) * scale, ids, gating.shape[1])


def softplus_sqrt_topk_gems(gating, bias, topk, scale):
    n = gating.shape[0]
    w = torch.empty(n, topk, dtype=torch.float32, device=gating.device)
    ids = torch.empty(n, topk, dtype=torch.int32, device=gating.device)
    rows = torch.empty(n, topk, dtype=torch.int32, device=gating.device)
    gems("topk_softplus_sqrt")(w, ids, rows, gating, True, scale, bias)
    return dense(w, ids, gating.shape[1])


def row_topk_mask(logits: torch.Tensor, ends: tuple[int, ...], k: int) -> torch.Tensor:
    """Which of each row's first `ends[r]` logits are among its k largest (a set: order-free)."""
    cols = torch.arange(logits.shape[1], device=logits.device)
    valid = cols[None, :] < torch.tensor(ends, device=logits.device)[:, None]
    ids = logits.masked_fill(~valid, float("-inf")).topk(k, dim=-1).indices
    return torch.zeros_like(logits, dtype=torch.bool).scatter(1, ids, True)


def _mask(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(logits, dtype=torch.bool).scatter(1, ids.long(), True)


def row_topk_prefill_gems(logits, ends, k):
    n = logits.shape[0]
    starts = torch.zeros(n, dtype=torch.int32, device=logits.device)
    stops = torch.tensor(ends, dtype=torch.int32, device=logits.device)
    ids = torch.empty(n, k, dtype=torch.int32, device=logits.device)
    gems("top_k_per_row_prefill")(logits, starts, stops, ids, n, logits.stride(0), logits.stride(1), k)
    return _mask(logits, ids)


def row_topk_decode_gems(logits, ends, k):
    seq_lens = torch.tensor(ends, dtype=torch.int32, device=logits.device)
    ids = torch.empty(1, k, dtype=torch.int32, device=logits.device)
    gems("top_k_per_row_decode")(logits, 1, seq_lens, ids, 1, logits.stride(0), logits.stride(1), k)
    return _mask(logits, ids)


def align_alloc_gems(topk_ids: torch.Tensor, num_experts: int, block_size: int):
    """The allocating form: moe_align_block_size(topk_ids, block_size, num_experts) -> its buffers."""
    sorted_ids, expert_ids, padded = gems("moe_align_block_size")(topk_ids, block_size, num_experts)
    return _canonical_alignment(sorted_ids, expert_ids, padded, topk_ids.numel(), block_size)


def fused_experts_inplace(x, w1, w2, w, ids):
    return x.copy_(fused_experts(x, w1, w2, w, ids))


def expert_gemm(a, b, w, ids):
    """One grouped GEMM of the fused-MoE kernel: C[t, k] = w[t, k] * (a[t] @ b[ids[t, k]]ᵀ)."""
    return torch.einsum("th,tknh->tkn", a, b[ids.long()]) * w[..., None]


def expert_gemm_gems(launcher: str, a, b, w, ids):
    import triton.language as tl  # a GPU host's FlagGems ships with triton

    block_m, top_k = 16, ids.shape[1]
    sorted_ids, expert_ids, padded = aligned_by_expert(ids, b.shape[0], block_m)  # the kernel's input
    c = torch.zeros(a.shape[0], top_k, b.shape[1], dtype=a.dtype, device=a.device)
    config: dict[str, Any] = {
        "BLOCK_SIZE_M": block_m,
        "BLOCK_SIZE_N": 32,
        "BLOCK_SIZE_K": 32,
        "GROUP_SIZE_M": 1,
    }
    compute = {torch.float16: tl.float16, torch.bfloat16: tl.bfloat16}.get(a.dtype, tl.float32)
    common = (w, sorted_ids, expert_ids, padded, True, top_k, config, compute)
    if launcher == "dispatch_fused_moe_kernel":
        gems(launcher)(a, b, c, None, None, None, *common, False, False, False, False, False)
    else:
        gems(launcher)(a, b, c, None, None, *common)
    return c


def _gemm_case(name: str, tokens: int, experts: int, topk: int, hidden: int, n: int) -> Case:
    return Case(
        name,
        T(tokens, hidden),
        T(experts, n, hidden, low=-0.1, high=0.1),
        T(tokens, topk, low=0, high=1, dtype="fp32"),
        T(tokens, topk, kind="index", high=experts, dtype="int32"),
    )


GEMM_CASES = [_gemm_case("5 tokens, 4 experts 64->32, top 2", 5, 4, 2, 64, 32)]
SMALL_EXPERTS = [c for c in moe_cases_experts() if c.name.startswith("small")]
ROUTING = [Case("6 tokens, 64 experts in 8 groups", T(6, 64, low=-3, high=3), T(64, low=-0.1, high=0.1))]

SPECS = [
    fused_spec(
        "grouped_topk",
        "grouped_topk",
        lambda s, b: grouped_topk(s, b, 8, 3, 6, 2.5, True),
        lambda s, b: grouped_topk_gems(s, b, 8, 3, 6, 2.5, True),
        cases=ROUTING,
        dtypes=("fp32",),
        tags=(*MOE, "deepseek"),
    ),
    fused_spec(
        "topk_softplus_sqrt",
        "topk_softplus_sqrt",
        lambda g, b: softplus_sqrt_topk(g, b, 6, 1.5),
        lambda g, b: softplus_sqrt_topk_gems(g, b, 6, 1.5),
        cases=ROUTING,
        dtypes=("fp32",),
        tags=(*MOE, "deepseek"),
    ),
    fused_spec(
        "top_k_per_row_prefill",
        "top_k_per_row_prefill",
        lambda x: row_topk_mask(x, (300, 97, 512), 32),
        lambda x: row_topk_prefill_gems(x, (300, 97, 512), 32),
        cases=[Case("3 rows of 512, valid 300/97/512, top 32", T(3, 512))],
        dtypes=("fp32",),
        compare="exact",
        tags=("deepseek", "attention"),
    ),
    fused_spec(
        "top_k_per_row_decode",
        "top_k_per_row_decode",
        lambda x: row_topk_mask(x, (300,), 32),
        lambda x: row_topk_decode_gems(x, (300,), 32),
        cases=[Case("1 row of 512, valid 300, top 32", T(1, 512))],
        dtypes=("fp32",),
        compare="exact",
        tags=("deepseek", "attention"),
    ),
    fused_spec(
        "moe_align_block_size_alloc",
        "moe_align_block_size",
        moe_align_block_size,
        align_alloc_gems,
        cases=[Case("5 tokens, top 2 of 8, block 16", T(5, 2, kind="index", high=8, dtype="int32"), 8, 16)],
        dtypes=("fp32",),
        compare="exact",
        tags=(*MOE,),
    ),
    fused_spec(
        "fused_experts_impl",
        "fused_experts_impl",
        fused_experts,
        lambda x, w1, w2, w, ids: gems("fused_experts_impl")(x, w1, w2, w, ids),
        cases=SMALL_EXPERTS,
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        tags=(*MOE,),
    ),
    fused_spec(
        "inplace_fused_experts",
        "inplace_fused_experts",
        fused_experts_inplace,
        lambda x, w1, w2, w, ids: (gems("inplace_fused_experts")(x, w1, w2, w, ids), x)[1],
        cases=SMALL_EXPERTS,
        mutates=True,
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        tags=(*MOE,),
    ),
    fused_spec(
        "invoke_fused_moe_triton_kernel",
        "invoke_fused_moe_triton_kernel",
        expert_gemm,
        lambda a, b, w, ids: expert_gemm_gems("invoke_fused_moe_triton_kernel", a, b, w, ids),
        cases=GEMM_CASES,
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        tags=(*MOE,),
    ),
    fused_spec(
        "dispatch_fused_moe_kernel",
        "dispatch_fused_moe_kernel",
        expert_gemm,
        lambda a, b, w, ids: expert_gemm_gems("dispatch_fused_moe_kernel", a, b, w, ids),
        cases=GEMM_CASES,
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        tags=(*VLLM, *MOE),
    ),
]
