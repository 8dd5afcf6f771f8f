"""Fused FlagGems operators outside aten: the ones vLLM (and vllm-plugin-FL) call directly.

flag-gems 5.0.2 exports these from `flag_gems.fused` / `flag_gems.ops` as plain Python functions, not as
aten registrations, so `use_gems(include=...)` cannot route them: each spec's `fn` is a pure-torch
statement of the op's math (what the torch and inductor backends run, and what the float64 reference
evaluates) and `impls["flaggems"]` calls the real FlagGems function with its real signature, imported
when the case runs (flag_gems cannot be imported on a host without a supported device).
`flaggems=` stays empty on purpose: it names aten registrations (tests/test_catalog.py checks that);
the FlagGems function each spec calls is listed in `TARGETS`.

Tags: "fused" on every spec; "vllm-fl" where vllm-plugin-FL routes that FlagGems function
(vllm_fl/dispatch/backends/flaggems/{register_ops,flaggems}.py and impl/*.py, and its attention backend
vllm_fl/attention/attention.py); "moe" for the mixture-of-experts helpers, shaped after Qwen3-30B-A3B
(hidden 2048, 128 experts, top-8, expert width 768): Qwen3-4B is dense.

In-place ops (`mutates=True`: the first argument is written and returned, no other input may be):
the cache writers take vLLM's whole KV-cache tensor first and write through the key/value views vLLM
carves out of it (flash layout (2, blocks, block_size, heads, dim); paged layout as
PagedAttention.split_kv_cache views (2, blocks, block_size * heads * dim)), so both caches are compared;
the in-place rotary embedding takes the qkv projection output and rotates its q/k views (v must stay
untouched); apply_repetition_penalties writes its logits. Slot mappings are distinct by construction
(`_slots`: token i goes to a random slot of its own stride of the cache; optionally the last is -1,
padding, which the kernels must skip).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from portability.kernels._qwen3 import HEAD_DIM, HIDDEN, INTERMEDIATE, KV_HEADS, Q_HEADS, VOCAB
from portability.kernels.attention import MAX_POS, rope_case, rotary_embedding
from portability.kernels.linear import MATMUL_ATOL, MATMUL_RTOL

from portability.spec import Case, OpSpec, T

# Qwen3-30B-A3B's MoE layer, for the routing/expert helpers.
MOE_HIDDEN, MOE_EXPERTS, MOE_TOPK, MOE_WIDTH = 2048, 128, 8, 768
WEIGHT = {"low": 0.5, "high": 1.5}

# op name -> FlagGems function the spec's impls["flaggems"] calls (dotted below `flag_gems`).
TARGETS: dict[str, str] = {}


def _gems(path: str) -> Callable[..., Any]:
    """`flag_gems.<path>` resolved at call time (e.g. "topk_softmax", "modules.rotary_embedding.x")."""

    def call(*args: Any, **kwargs: Any) -> Any:
        obj: Any = importlib.import_module("flag_gems")
        for part in path.split("."):
            obj = (
                getattr(obj, part)
                if hasattr(obj, part)
                else importlib.import_module(f"{obj.__name__}.{part}")
            )
        return obj(*args, **kwargs)

    call.__name__ = f"flag_gems.{path}"
    return call


def fused_spec(name: str, target: str, fn: Callable[..., Any], impl: Callable[..., Any], **kw: Any) -> OpSpec:
    TARGETS[name] = target
    tags = ("fused", *kw.pop("tags", ()))
    return OpSpec(name, fn, impls={"flaggems": impl}, tags=tags, **kw)


def _halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = x.shape[-1] // 2
    return x[..., :d], x[..., d:]


# ---------------------------------------------------------------- gated activations (x = [a | b])

GELU_C = math.sqrt(2 / math.pi)


def gelu_tanh(a: torch.Tensor) -> torch.Tensor:
    return 0.5 * a * (1 + torch.tanh(GELU_C * (a + 0.044715 * a**3)))


def d_silu(a: torch.Tensor) -> torch.Tensor:
    s = torch.sigmoid(a)
    return s + a * s * (1 - s)


def d_gelu_tanh(a: torch.Tensor) -> torch.Tensor:
    t = torch.tanh(GELU_C * (a + 0.044715 * a**3))
    return 0.5 * (1 + t) + 0.5 * a * (1 - t * t) * GELU_C * (1 + 3 * 0.044715 * a * a)


ACTS: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    "swiglu": (F.silu, d_silu),
    "geglu": (gelu_tanh, d_gelu_tanh),  # FlagGems' geglu is the tanh approximation
    "reglu": (F.relu, lambda a: (a > 0).to(a.dtype)),
}


def glu_forward(kind: str) -> Callable[[torch.Tensor], torch.Tensor]:
    def fn(x: torch.Tensor) -> torch.Tensor:
        a, b = _halves(x)
        return ACTS[kind][0](a) * b

    return fn


def glu_backward(kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """d/dx of act(a) * b, for x = [a | b]: [grad * b * act'(a) | grad * act(a)] (FlagGems' d<kind>)."""

    def fn(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        act, dact = ACTS[kind]
        a, b = _halves(x)
        return torch.cat([grad * b * dact(a), grad * act(a)], dim=-1)

    return fn


def gelu_and_mul(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """vLLM's GeluAndMul: x = [gate | up] -> gelu(gate) * up."""
    a, b = _halves(x)
    return F.gelu(a, approximate=approximate) * b


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    a, b = _halves(x)
    return F.silu(a) * b


def silu_and_mul_out_gems(x: torch.Tensor) -> torch.Tensor:
    a, b = _halves(x)
    out = torch.empty(a.shape, dtype=x.dtype, device=x.device)
    _gems("silu_and_mul_out")(a, b, out)
    return out


def gated(n: int, **kw: Any) -> list[Case]:
    """[a | b] inputs: batched decode and prefill at Qwen3-4B's MLP width, and a small odd one."""
    return [
        Case(f"decode 8x{2 * n}", T(8, 2 * n, low=-4, high=4), **kw),
        Case(f"prefill 512x{2 * n}", T(512, 2 * n, low=-4, high=4), **kw),
        Case("odd 3x26", T(3, 26, low=-4, high=4), **kw),
    ]


def glu_backward_cases() -> list[Case]:
    return [
        Case(f"decode 8x{2 * INTERMEDIATE}", T(8, INTERMEDIATE), T(8, 2 * INTERMEDIATE, low=-4, high=4)),
        Case("odd 3x26", T(3, 13), T(3, 26, low=-4, high=4)),
    ]


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
    _gems("topk_softmax")(weights, ids, rows, gating, renormalize)
    return weights, ids, rows


def moe_sum_gems(x: torch.Tensor) -> torch.Tensor:
    out = torch.empty(x.shape[0], x.shape[2], dtype=x.dtype, device=x.device)
    _gems("moe_sum")(x, out)
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


def moe_align_block_size(
    topk_ids: torch.Tensor, num_experts: int, block_size: int
) -> tuple[torch.Tensor, ...]:
    """Sort the flattened (token, k) entries by expert, pad each expert's run to a multiple of
    block_size with the value numel, and give the expert of every block (vLLM's moe_align_block_size)."""
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
    return _canonical_alignment(sorted_ids, expert_ids, padded.sum(), numel, block_size)


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
    _gems("moe_align_block_size_triton")(topk_ids, num_experts, block_size, sorted_ids, expert_ids, padded)
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
    _gems("reshape_and_cache_flash")(
        key, value, key_cache, value_cache, slots, "auto", _scale(key), _scale(key)
    )
    return kv_cache


def reshape_and_cache_gems(kv_cache, key, value, offsets, pad=False):
    key_cache, value_cache = paged_views(kv_cache, *key.shape[-2:])
    slots = _slots(offsets, key_cache.shape[0] * key_cache.shape[3], pad)
    _gems("reshape_and_cache")(key, value, key_cache, value_cache, slots, "auto", _scale(key), _scale(key))
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
    _gems("concat_and_cache_mla")(kv_c, k_pe, kv_cache, slots, "auto", _scale(kv_c))
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
        _gems(name)(
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
    _gems("modules.rotary_embedding.gems_rope_forward")(
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
    _gems("apply_repetition_penalties")(logits, prompt_mask, output_mask, penalties)  # returns None
    return logits


def cross_entropy(logits, target, reduction="mean", label_smoothing=0.0):
    return F.cross_entropy(logits, target, reduction=reduction, label_smoothing=label_smoothing)


VLLM = ("vllm-fl",)
MOE = ("moe",)

SPECS = [
    # -- vllm-plugin-FL routes these to FlagGems
    fused_spec(
        "gelu_and_mul",
        "gelu_and_mul",
        gelu_and_mul,
        lambda x, approximate="none": _gems("gelu_and_mul")(*_halves(x), approximate),
        cases=[*gated(INTERMEDIATE), Case("tanh decode 8x19456", T(8, 2 * INTERMEDIATE), approximate="tanh")],
        tags=(*VLLM, "activation"),
    ),
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
        lambda x, w1, w2, w, ids: _gems("outplace_fused_experts")(x, w1, w2, w, ids),
        cases=moe_cases_experts(),
        atol=MATMUL_ATOL,
        rtol=MATMUL_RTOL,
        tags=(*VLLM, *MOE),
    ),
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
        "rotary_embedding_inplace",
        "modules.rotary_embedding.gems_rope_forward",
        rope_qkv,
        rope_qkv_gems,
        cases=[rope_qkv_case("decode 8 tokens", 8), rope_qkv_case("prefill 512 tokens", 512)],
        mutates=True,
        tags=(*VLLM, "qwen3", "attention"),
    ),
    # -- FlagGems' other fused operators
    fused_spec(
        "silu_and_mul_out",
        "silu_and_mul_out",
        silu_and_mul,
        silu_and_mul_out_gems,
        cases=[gated(INTERMEDIATE)[0], gated(INTERMEDIATE)[2]],
        tags=("qwen3", "activation"),
    ),
    *[
        fused_spec(
            kind, kind, glu_forward(kind), _gems(kind), cases=gated(INTERMEDIATE)[::2], tags=("activation",)
        )
        for kind in ACTS
    ],
    *[
        fused_spec(f"d{kind}", f"d{kind}", glu_backward(kind), _gems(f"d{kind}"), cases=glu_backward_cases())
        for kind in ACTS
    ],
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
    fused_spec(
        "rotary_embedding_interleaved",
        "apply_rotary_pos_emb",
        rotary_interleaved,
        lambda q, k, cos, sin, pos: _gems("apply_rotary_pos_emb")(
            q, k, cos, sin, pos, rotary_interleaved=True
        ),
        cases=[rope_case("decode 8 tokens", 8), rope_case("prefill 512 tokens", 512)],
        tags=("attention",),
    ),
    fused_spec(
        "skip_layer_norm",
        "skip_layer_norm",
        lambda x, r, w, b: F.layer_norm(x + r, (x.shape[-1],), w, b, 1e-5),
        lambda x, r, w, b: _gems("skip_layer_norm")(x, r, [x.shape[-1]], w, b, 1e-5),
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
        lambda v, g: _gems("weight_norm")(v, g, 0),
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
        lambda x, w, b: _gems("instance_norm")(x, w, b, None, None, True, 0.1, 1e-5, False),
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
        lambda a, b: _gems("outer")(a, b),
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
        lambda logits, target, reduction="mean", label_smoothing=0.0: _gems("cross_entropy_loss")(
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
