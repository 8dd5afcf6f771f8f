"""KV-cache writes (in place on vLLM's cache tensor) and paged attention over them (fused/_common.py)."""

from __future__ import annotations

import torch
from portability.kernels.fused._common import (
    VLLM,
    fused_spec,
    gems,
)
from portability.kernels.qwen3._model import HEAD_DIM, KV_HEADS, Q_HEADS
from portability.kernels.qwen3.linear import MATMUL_ATOL, MATMUL_RTOL

from portability.spec import Case, T

# ---------------------------------------------------------------- KV-cache writes (in place on the cache)

X = 8  # reshape_and_cache's key-cache packing: 16 bytes of fp16/bf16 per innermost vector


def _slots(offsets: torch.Tensor, num_slots: int, pad: bool) -> torch.Tensor:
    """Distinct slots: token i -> i * stride + offsets[i] (stride = num_slots // tokens); with `pad` the
    last token is padding (slot -1), which the kernels must skip."""
    n = offsets.shape[0]
    idx = torch.arange(n, device=offsets.device)
    slots = idx * (num_slots // n) + offsets.long()
    return torch.where(idx == n - 1, -1, slots) if pad else slots


def _split(slots: torch.Tensor, block_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    keep = slots >= 0
    return keep, slots[keep] // block_size, slots[keep] % block_size


def _scale(t: torch.Tensor) -> torch.Tensor:
    return torch.ones((), dtype=torch.float32, device=t.device)


def flash_views(kv_cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's flash-attention layout: kv_cache (2, blocks, block_size, kv_heads, head_dim) -> k, v."""
    return kv_cache[0], kv_cache[1]


def paged_views(kv_cache: torch.Tensor, heads: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """vLLM's paged-attention layout (PagedAttention.split_kv_cache): kv_cache (2, blocks,
    block_size * kv_heads * head_dim) -> key_cache (blocks, kv_heads, head_dim // x, block_size, x),
    value_cache (blocks, kv_heads, head_dim, block_size)."""
    blocks = kv_cache.shape[1]
    return kv_cache[0].view(blocks, heads, dim // X, -1, X), kv_cache[1].view(blocks, heads, dim, -1)


def reshape_and_cache_flash(kv_cache, key, value, offsets, pad=False):
    """key/value (tokens, kv_heads, head_dim) written at slot = block * block_size + offset; negative
    slots are padding and skipped. Returns the cache it wrote."""
    key_cache, value_cache = flash_views(kv_cache)
    keep, blk, off = _split(_slots(offsets, key_cache.shape[0] * key_cache.shape[1], pad), key_cache.shape[1])
    key_cache[blk, off] = key[keep]
    value_cache[blk, off] = value[keep]
    return kv_cache


def reshape_and_cache(kv_cache, key, value, offsets, pad=False):
    heads, dim = key.shape[-2:]
    key_cache, value_cache = paged_views(kv_cache, heads, dim)
    block_size = key_cache.shape[3]
    keep, blk, off = _split(_slots(offsets, key_cache.shape[0] * block_size, pad), block_size)
    key_cache[blk, :, :, off, :] = key[keep].reshape(-1, heads, dim // X, X)
    value_cache[blk, :, :, off] = value[keep]
    return kv_cache


def reshape_and_cache_flash_gems(kv_cache, key, value, offsets, pad=False):
    key_cache, value_cache = flash_views(kv_cache)
    slots = _slots(offsets, key_cache.shape[0] * key_cache.shape[1], pad)
    gems("reshape_and_cache_flash")(
        key, value, key_cache, value_cache, slots, "auto", _scale(key), _scale(key)
    )
    return kv_cache


def reshape_and_cache_gems(kv_cache, key, value, offsets, pad=False):
    key_cache, value_cache = paged_views(kv_cache, *key.shape[-2:])
    slots = _slots(offsets, key_cache.shape[0] * key_cache.shape[3], pad)
    gems("reshape_and_cache")(key, value, key_cache, value_cache, slots, "auto", _scale(key), _scale(key))
    return kv_cache


def kv_cases(flash: bool) -> list[Case]:
    def case(name: str, tokens: int, blocks: int, block_size: int, heads: int, dim: int, pad=False) -> Case:
        stride = blocks * block_size // tokens
        cache = T(2, blocks, block_size, heads, dim) if flash else T(2, blocks, block_size * heads * dim)
        return Case(
            name,
            cache,
            T(tokens, heads, dim),
            T(tokens, heads, dim),
            T(tokens, kind="index", low=0, high=stride),
            pad=pad,
        )

    return [
        case("decode 8 tokens, 64 blocks of 16", 8, 64, 16, KV_HEADS, HEAD_DIM),
        case("prefill 512 tokens, 64 blocks of 16", 512, 64, 16, KV_HEADS, HEAD_DIM),
        case("padded 5 tokens (last slot -1)", 5, 4, 8, 2, 16, pad=True),
    ]


def concat_and_cache_mla(kv_cache, kv_c, k_pe, offsets, pad=False):
    """MLA cache write: kv_cache (blocks, block_size, kv_lora_rank + rope_dim)[slot] = [kv_c | k_pe]."""
    slots = _slots(offsets, kv_cache.shape[0] * kv_cache.shape[1], pad)
    keep, blk, off = _split(slots, kv_cache.shape[1])
    kv_cache[blk, off] = torch.cat([kv_c[keep], k_pe[keep]], dim=-1)
    return kv_cache


def concat_and_cache_mla_gems(kv_cache, kv_c, k_pe, offsets, pad=False):
    slots = _slots(offsets, kv_cache.shape[0] * kv_cache.shape[1], pad)
    gems("concat_and_cache_mla")(kv_c, k_pe, kv_cache, slots, "auto", _scale(kv_c))
    return kv_cache


def mla_cases() -> list[Case]:
    def case(name: str, tokens: int, blocks: int, block_size: int, rank: int, rope: int, pad=False) -> Case:
        stride = blocks * block_size // tokens
        return Case(
            name,
            T(blocks, block_size, rank + rope),
            T(tokens, rank),
            T(tokens, rope),
            T(tokens, kind="index", low=0, high=stride),
            pad=pad,
        )

    return [
        case("decode 8 tokens, DeepSeek 512+64", 8, 32, 16, 512, 64),
        case("prefill 512 tokens, DeepSeek 512+64", 512, 64, 16, 512, 64),
        case("padded 5 tokens (last slot -1)", 5, 4, 8, 16, 8, pad=True),
    ]


# ---------------------------------------------------------------- paged attention (vLLM's flash backend)


def _block_table(num_seqs: int, per_seq: int, num_blocks: int, device: torch.device) -> torch.Tensor:
    """Sequence i, j-th block -> physical block num_blocks - 1 - (i * per_seq + j): distinct and not the
    identity, so a kernel that ignores the table reads the wrong blocks."""
    logical = torch.arange(num_seqs * per_seq, device=device, dtype=torch.int32).view(num_seqs, per_seq)
    return num_blocks - 1 - logical


def paged_attention(q, k_cache, v_cache, query_lens, kv_lens):
    """Causal GQA attention of each sequence's queries (packed along dim 0) over its paged KV cache;
    the causal mask is aligned bottom-right (query i of a sequence sees kv_len - query_len + i + 1 keys)."""
    num_blocks, block_size, kv_heads, dim = k_cache.shape
    table = _block_table(len(kv_lens), -(-max(kv_lens) // block_size), num_blocks, q.device)
    outs, start = [], 0
    for i, (ql, kl) in enumerate(zip(query_lens, kv_lens, strict=True)):
        blocks = table[i, : -(-kl // block_size)].long()
        k = k_cache[blocks].reshape(-1, kv_heads, dim)[:kl].repeat_interleave(q.shape[1] // kv_heads, dim=1)
        v = v_cache[blocks].reshape(-1, kv_heads, dim)[:kl].repeat_interleave(q.shape[1] // kv_heads, dim=1)
        scores = torch.einsum("qhd,khd->hqk", q[start : start + ql], k) / dim**0.5
        mask = torch.ones(ql, kl, dtype=torch.bool, device=q.device).tril(kl - ql)
        probs = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
        outs.append(torch.einsum("hqk,khd->qhd", probs, v))
        start += ql
    return torch.cat(outs, dim=0)


def paged_attention_gems(name: str):
    def impl(q, k_cache, v_cache, query_lens, kv_lens):
        """As vllm-plugin-FL's AttentionFLImpl calls it (vllm_fl/attention/attention.py)."""
        dev = q.device
        table = _block_table(len(kv_lens), -(-max(kv_lens) // k_cache.shape[1]), k_cache.shape[0], dev)
        cu_q = torch.tensor([0, *query_lens], dtype=torch.int32, device=dev).cumsum(0, dtype=torch.int32)
        out = torch.empty_like(q)
        gems(name)(
            q=q,
            k=k_cache,
            v=v_cache,
            out=out,
            cu_seqlens_q=cu_q,
            max_seqlen_q=max(query_lens),
            seqused_k=torch.tensor(kv_lens, dtype=torch.int32, device=dev),
            max_seqlen_k=max(kv_lens),
            softmax_scale=q.shape[-1] ** -0.5,
            causal=True,
            block_table=table,
        )
        return out

    return impl


def paged_cases() -> list[Case]:
    def case(name: str, query_lens: tuple[int, ...], kv_lens: tuple[int, ...], block_size: int = 16) -> Case:
        blocks = len(kv_lens) * -(-max(kv_lens) // block_size)
        return Case(
            name,
            T(sum(query_lens), Q_HEADS, HEAD_DIM),
            T(blocks, block_size, KV_HEADS, HEAD_DIM),
            T(blocks, block_size, KV_HEADS, HEAD_DIM),
            query_lens,
            kv_lens,
        )

    return [
        case("decode 8 seqs over 1024", (1,) * 8, (1024,) * 8),
        case("prefill 512 tokens", (512,), (512,)),
        case("chunked prefill 1+5+129 over 300/18/463", (1, 5, 129), (300, 18, 463)),
    ]


SPECS = [
    fused_spec(
        "reshape_and_cache_flash",
        "reshape_and_cache_flash",
        reshape_and_cache_flash,
        reshape_and_cache_flash_gems,
        cases=kv_cases(flash=True),
        mutates=True,
        tags=(*VLLM, "qwen3", "attention", "kv-cache"),
    ),
    fused_spec(
        "flash_attn_varlen_func",
        "flash_attn_varlen_func",
        paged_attention,
        paged_attention_gems("flash_attn_varlen_func"),
        cases=paged_cases(),
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        tags=(*VLLM, "qwen3", "attention"),
    ),
    fused_spec(
        "reshape_and_cache",
        "reshape_and_cache",
        reshape_and_cache,
        reshape_and_cache_gems,
        cases=kv_cases(flash=False),
        mutates=True,
        tags=("qwen3", "attention", "kv-cache"),
    ),
    fused_spec(
        "concat_and_cache_mla",
        "concat_and_cache_mla",
        concat_and_cache_mla,
        concat_and_cache_mla_gems,
        cases=mla_cases(),
        mutates=True,
        tags=("attention", "kv-cache"),
    ),
    fused_spec(
        "flash_attn_varlen_opt_func",
        "flash_attn_varlen_opt_func",
        paged_attention,
        paged_attention_gems("flash_attn_varlen_opt_func"),
        cases=paged_cases(),
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        tags=("qwen3", "attention"),
    ),
]
