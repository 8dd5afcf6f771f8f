"""Fused mixture-of-experts helpers (routing, alignment, experts), Qwen3-30B-A3B shapes."""

from __future__ import annotations

import torch
from portability.kernels.fused._common import (
    MOE,
    MOE_EXPERTS,
    MOE_HIDDEN,
    MOE_TOPK,
    MOE_WIDTH,
    VLLM,
    fused_spec,
    gems,
)
from portability.kernels.fused.activation import silu_and_mul
from portability.kernels.qwen3.linear import MATMUL_ATOL, MATMUL_RTOL

from portability.spec import Case, T

# ---------------------------------------------------------------- MoE routing and experts


def topk_softmax(gating: torch.Tensor, topk: int, renormalize: bool = False) -> tuple[torch.Tensor, ...]:
    """vLLM's topk_softmax: softmax over experts, top-k weights and expert ids, and the source-row index
    of each (token, k) pair, k * num_tokens + token; `renormalize` rescales the k weights to sum to 1."""
    weights, ids = torch.softmax(gating, dim=-1).topk(topk, dim=-1)
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    n = gating.shape[0]
    rows = (
        torch.arange(topk, device=gating.device)[None, :] * n + torch.arange(n, device=gating.device)[:, None]
    )
    return weights, ids, rows


def topk_softmax_gems(gating: torch.Tensor, topk: int, renormalize: bool = False) -> tuple[torch.Tensor, ...]:
    n = gating.shape[0]
    weights = torch.empty(n, topk, dtype=torch.float32, device=gating.device)
    ids = torch.empty(n, topk, dtype=torch.int32, device=gating.device)
    rows = torch.empty(n, topk, dtype=torch.int32, device=gating.device)
    gems("topk_softmax")(weights, ids, rows, gating, renormalize)
    return weights, ids, rows


def moe_sum_gems(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.shape[0], x.shape[2], dtype=x.dtype, device=x.device)
    gems("moe_sum")(x, out)
    return out


def _canonical_alignment(
    sorted_ids: torch.Tensor, expert_ids: torch.Tensor, padded: torch.Tensor, numel: int, block_size: int
) -> tuple[torch.Tensor, ...]:
    """moe_align_block_size's result up to the order of tokens inside one expert's segment (which the
    contract leaves free): (total padded length, the expert of each used block, the used part of
    sorted_token_ids with each expert's tokens in ascending order, padding entries (= numel) last)."""
    n = int(padded.reshape(-1)[0])
    pos = torch.arange(n, device=sorted_ids.device)
    key = expert_ids[pos // block_size].long() * (numel + 1) + sorted_ids[:n].long()
    return padded.reshape(1).long(), expert_ids[: n // block_size].long(), key.sort().values % (numel + 1)


def aligned_by_expert(
    topk_ids: torch.Tensor, num_experts: int, block_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sort the flattened (token, k) entries by expert, pad each expert's run to a multiple of
    block_size with the value numel, and give the expert of every block (vLLM's moe_align_block_size):
    (sorted_token_ids, expert_ids, total padded length), int32 as the kernels take them."""
    flat = topk_ids.flatten().long()
    numel = flat.numel()
    counts = torch.bincount(flat, minlength=num_experts)
    padded = (counts + block_size - 1) // block_size * block_size
    order = torch.argsort(flat, stable=True)
    expert_of = flat[order]
    rank = torch.arange(numel, device=flat.device) - (torch.cumsum(counts, 0) - counts)[expert_of]
    sorted_ids = torch.full((int(padded.sum()),), numel, dtype=torch.int64, device=flat.device)
    sorted_ids[(torch.cumsum(padded, 0) - padded)[expert_of] + rank] = order
    expert_ids = torch.repeat_interleave(torch.arange(num_experts, device=flat.device), padded // block_size)
    return sorted_ids.int(), expert_ids.int(), padded.sum().reshape(1).int()


def moe_align_block_size(
    topk_ids: torch.Tensor, num_experts: int, block_size: int
) -> tuple[torch.Tensor, ...]:
    """aligned_by_expert, in the canonical form both sides are compared in."""
    sorted_ids, expert_ids, padded = aligned_by_expert(topk_ids, num_experts, block_size)
    return _canonical_alignment(sorted_ids, expert_ids, padded, topk_ids.numel(), block_size)


def moe_align_block_size_gems(
    topk_ids: torch.Tensor, num_experts: int, block_size: int
) -> tuple[torch.Tensor, ...]:
    """Buffers sized as vllm-plugin-FL's moe_align_block_size_flaggems sizes them."""
    numel = topk_ids.numel()
    max_padded = numel + num_experts * (block_size - 1)
    if numel < num_experts:
        max_padded = min(numel * block_size, max_padded)
    dev = topk_ids.device
    sorted_ids = torch.empty(max_padded, dtype=torch.int32, device=dev)
    expert_ids = torch.empty(-(-max_padded // block_size), dtype=torch.int32, device=dev)
    padded = torch.empty(1, dtype=torch.int32, device=dev)
    gems("moe_align_block_size_triton")(topk_ids, num_experts, block_size, sorted_ids, expert_ids, padded)
    return _canonical_alignment(sorted_ids, expert_ids, padded, numel, block_size)


def fused_experts(
    x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, topk_weights: torch.Tensor, topk_ids: torch.Tensor
) -> torch.Tensor:
    """The MoE block after routing: out[t] = sum_k w[t,k] * (silu_and_mul(x[t] @ w1[e]ᵀ) @ w2[e]ᵀ),
    e = topk_ids[t,k]; w1: (experts, 2*width, hidden) as [gate | up], w2: (experts, hidden, width)."""
    out = torch.zeros_like(x)
    for e in torch.unique(topk_ids).tolist():
        tok, k = (topk_ids == e).nonzero(as_tuple=True)
        y = silu_and_mul(x[tok] @ w1[e].T) @ w2[e].T
        out.index_add_(0, tok, (y * topk_weights[tok, k, None]).to(out.dtype))
    return out


def moe_cases_experts() -> list[Case]:
    small = {"low": -0.05, "high": 0.05}

    def case(name: str, tokens: int, experts: int, topk: int, hidden: int, width: int) -> Case:
        return Case(
            name,
            T(tokens, hidden),
            T(experts, 2 * width, hidden, **small),
            T(experts, hidden, width, **small),
            T(tokens, topk, low=0, high=1, dtype="fp32"),
            T(tokens, topk, kind="index", low=0, high=experts, dtype="int32"),
        )

    return [
        case(f"decode 8 tokens, 8 experts {MOE_HIDDEN}->{MOE_WIDTH}, top 4", 8, 8, 4, MOE_HIDDEN, MOE_WIDTH),
        case(
            f"prefill 64 tokens, 8 experts {MOE_HIDDEN}->{MOE_WIDTH}, top 2", 64, 8, 2, MOE_HIDDEN, MOE_WIDTH
        ),
        case("small 5 tokens, 4 experts 64->32, top 2", 5, 4, 2, 64, 32),
    ]


SPECS = [
    fused_spec(
        "topk_softmax",
        "topk_softmax",
        topk_softmax,
        topk_softmax_gems,
        cases=[
            Case("decode 8 tokens, 128 experts, top 8", T(8, MOE_EXPERTS, low=-4, high=4), MOE_TOPK),
            Case(
                "prefill 512 tokens, 128 experts, top 8, renormalize",
                T(512, MOE_EXPERTS, low=-4, high=4),
                MOE_TOPK,
                renormalize=True,
            ),
            Case("small 5 tokens, 10 experts, top 2", T(5, 10), 2),
        ],
        # Expert ids are compared exactly: at fp16/bf16 random router logits tie often enough that the
        # chosen ids legitimately differ, so the op is compared at fp32 (vLLM keeps router logits in fp32).
        dtypes=("fp32",),
        tags=(*VLLM, *MOE),
    ),
    fused_spec(
        "moe_sum",
        "moe_sum",
        lambda x: x.sum(dim=1),
        moe_sum_gems,
        cases=[
            Case("decode 8x8x2048", T(8, MOE_TOPK, MOE_HIDDEN)),
            Case("prefill 512x8x2048", T(512, MOE_TOPK, MOE_HIDDEN)),
            Case("odd 3x2x33", T(3, 2, 33)),
        ],
        tags=(*VLLM, *MOE),
    ),
    fused_spec(
        "moe_align_block_size",
        "moe_align_block_size_triton",
        moe_align_block_size,
        moe_align_block_size_gems,
        cases=[
            Case(
                "decode 8 tokens, top 8 of 128, block 16",
                T(8, MOE_TOPK, kind="index", high=MOE_EXPERTS, dtype="int32"),
                MOE_EXPERTS,
                16,
            ),
            Case(
                "prefill 512 tokens, top 8 of 128, block 64",
                T(512, MOE_TOPK, kind="index", high=MOE_EXPERTS, dtype="int32"),
                MOE_EXPERTS,
                64,
            ),
            Case(
                "1 token, fewer entries than experts",
                T(1, MOE_TOPK, kind="index", high=MOE_EXPERTS, dtype="int32"),
                MOE_EXPERTS,
                16,
            ),
            Case("small 5 tokens, top 2 of 4, block 4", T(5, 2, kind="index", high=4, dtype="int32"), 4, 4),
        ],
        dtypes=("fp32",),  # integer inputs: the case dtype is nominal (the default matrix has no int cells)
        compare="exact",
        tags=(*VLLM, *MOE),
    ),
    fused_spec(
        "fused_experts",
        # vllm-plugin-FL routes dispatch_fused_moe_kernel, the kernel launcher this calls for both GEMMs
        "outplace_fused_experts",
        fused_experts,
        lambda x, w1, w2, w, ids: gems("outplace_fused_experts")(x, w1, w2, w, ids),
        cases=moe_cases_experts(),
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        tags=(*VLLM, *MOE),
    ),
]
