"""DeepSeek-V4 attention and MoE staging helpers in FlagGems 5.3 outside aten (kernels/fused/_common.py):
index bookkeeping of the sparse attention (top-k indices combined with the sliding window, local top-k
indices mapped to global cache slots), the fp8 key cache's dequantising gather, and the MegaMoE input
staging (fp8 with packed power-of-two scales). Request layouts are fixed per spec (module constants), the
data random; index results are compared exactly."""

from __future__ import annotations

import torch
from portability.kernels.fused._common import MOE, fused_spec, gems

from portability.spec import Case, T

FP8 = torch.float8_e4m3fn
I32 = {"dtype": "int32"}


def wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32, as the kernels compute (float64 stays float64 for the reference)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


# ---------------------------------------------------------------- top-k + sliding window indices
TOPK, WINDOW, RATIO, M, N = 8, 6, 4, 100, 50
QUERY_LENS, SEQ_LENS, GATHER_LENS = (3, 5), (10, 20), (10, 12)
COMBINED = (TOPK + WINDOW + 127) // 128 * 128  # rows are padded to a multiple of 128 with -1


def combine_topk_swa(topk_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per query token at position pos of request b: its first min((pos+1)//RATIO, TOPK) top-k indices
    (offset by M·b), then its sliding window of min(pos+1, WINDOW) positions ending at pos (offset by
    M·b + N, relative to where the request's gathered keys start); -1 after; and the count of both."""
    tokens = topk_indices.shape[0]
    combined = torch.full((tokens, COMBINED), -1, dtype=torch.int32, device=topk_indices.device)
    lens = torch.zeros(tokens, dtype=torch.int32, device=topk_indices.device)
    token = 0
    for b, (q_len, seq_len, gather_len) in enumerate(zip(QUERY_LENS, SEQ_LENS, GATHER_LENS, strict=True)):
        for i in range(q_len):
            pos = seq_len - q_len + i
            n_topk, n_swa = min((pos + 1) // RATIO, TOPK), min(pos + 1, WINDOW)
            combined[token, :n_topk] = topk_indices[token, :n_topk] + M * b
            window = torch.arange(n_swa, device=combined.device) + pos - n_swa + 1 - (seq_len - gather_len)
            combined[token, n_topk : n_topk + n_swa] = (M * b + N + window).to(torch.int32)
            lens[token] = n_topk + n_swa
            token += 1
    return combined, lens


def combine_topk_swa_gems(topk_indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dev = topk_indices.device
    starts = torch.tensor([0, QUERY_LENS[0], sum(QUERY_LENS)], dtype=torch.int32, device=dev)
    seq = torch.tensor(SEQ_LENS, dtype=torch.int32, device=dev)
    gather = torch.tensor(GATHER_LENS, dtype=torch.int32, device=dev)
    return gems("combine_topk_swa_indices")(topk_indices, starts, seq, gather, WINDOW, RATIO, TOPK, M, N)


# ---------------------------------------------------------------- local top-k -> global cache slots
BLOCK = 4
TABLE = ((3, 0, 5), (1, 4, 2))  # request -> its cache blocks
TOKEN_REQ = (0, 0, 1, 1, 1)
VALID = (1, 1, 1, 0, 1)


def global_topk(local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's local indices (positions in its request, -1 = none) as global cache slots
    block_table[req][i // BLOCK] · BLOCK + i % BLOCK, and the count of real ones (0 for invalid tokens)."""
    table = torch.tensor(TABLE, device=local.device)[torch.tensor(TOKEN_REQ, device=local.device)]
    idx = local.long()
    slots = table.gather(1, idx.clamp(min=0) // BLOCK) * BLOCK + idx.clamp(min=0) % BLOCK
    slots = torch.where(idx >= 0, slots, -1).to(torch.int32)
    lens = (idx >= 0).sum(1) * torch.tensor(VALID, device=local.device)
    return slots, lens.to(torch.int32)


def global_topk_gems(local: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dev = local.device
    reqs = torch.tensor(TOKEN_REQ, dtype=torch.int32, device=dev)
    table = torch.tensor(TABLE, dtype=torch.int32, device=dev)
    valid = torch.tensor(VALID, dtype=torch.int32, device=dev)
    return gems("compute_global_topk_indices_and_lens")(local, reqs, table, BLOCK, valid)


# ---------------------------------------------------------------- fp8 key cache: dequantising gather
NOPE, ROPE, SLOTS_PER_TOKEN, CACHE_BLOCKS = 128, 64, 3, 5
TOKEN_BYTES = NOPE + 2 * ROPE  # fp8 nope part, then the bf16 rope part
K_SEQ, K_GATHER, K_TABLE, OFFSET = (7, 10), (5, 10), ((2, 0, 4), (1, 3, 0)), 1


def k_cache(nope: torch.Tensor, exps: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
    """The cache bytes: per block, BLOCK tokens of [fp8 nope | bf16 rope], then their ue8m0 exponents."""
    values = torch.cat([nope.to(FP8).view(torch.uint8), rope.to(torch.bfloat16).view(torch.uint8)], -1)
    scales = exps.to(torch.uint8)
    return torch.cat([values.flatten(1), scales.flatten(1)], 1)


def dequantize_gather(nope, exps, rope) -> torch.Tensor:
    """Each request's last K_GATHER keys, decoded: fp8 · 2^(exponent - 127) per 64 values, then rope."""
    out = torch.zeros(
        len(K_SEQ), OFFSET + max(K_GATHER), NOPE + ROPE, dtype=torch.float32, device=nope.device
    )
    for b, (seq_len, n) in enumerate(zip(K_SEQ, K_GATHER, strict=True)):
        for i in range(n):
            pos = seq_len - n + i
            blk, off = K_TABLE[b][pos // BLOCK], pos % BLOCK
            scale = torch.exp2(exps[blk, off, : NOPE // 64].to(torch.float32) - 127).repeat_interleave(64)
            out[b, OFFSET + i, :NOPE] = nope[blk, off].to(FP8).to(torch.float32) * scale
            out[b, OFFSET + i, NOPE:] = rope[blk, off].to(torch.bfloat16).to(torch.float32)
    return out.to(torch.bfloat16)


def dequantize_gather_gems(nope, exps, rope) -> torch.Tensor:
    dev = nope.device
    out = torch.zeros(len(K_SEQ), OFFSET + max(K_GATHER), NOPE + ROPE, dtype=torch.bfloat16, device=dev)
    gems("dequantize_and_gather_k_cache")(
        out,
        k_cache(nope, exps, rope),
        torch.tensor(K_SEQ, dtype=torch.int32, device=dev),
        torch.tensor(K_GATHER, dtype=torch.int32, device=dev),
        torch.tensor(K_TABLE, dtype=torch.int32, device=dev),
        BLOCK,
        OFFSET,
        ROPE,
    )
    return out


# ---------------------------------------------------------------- MegaMoE input staging
def stage_moe(hidden, weights, ids) -> tuple[torch.Tensor, ...]:
    """hidden in fp8 per 32 values with a power-of-two scale ≥ amax/448 (its biased exponent, four packed
    per int32 by 128 columns), the top-k ids widened to int64 and the weights copied."""
    groups = hidden.unflatten(-1, (-1, 32))
    scale = groups.abs().amax(-1).clamp(min=1e-4).float() / 448.0
    mantissa, exponent = torch.frexp(scale)  # scale = m · 2^e, m in [0.5, 1): ceil(log2) = e - (m == 0.5)
    biased = (exponent + 126 + (mantissa != 0.5).int()).clamp(1, 254)
    fp8 = (groups / torch.exp2(biased.to(groups.dtype) - 127)[..., None]).to(FP8)
    packed = (biased.unflatten(-1, (-1, 4)) << torch.tensor([0, 8, 16, 24], device=hidden.device)).sum(-1)
    return fp8.flatten(-2).float(), packed.to(torch.int32), ids.long(), weights


def stage_moe_gems(hidden, weights, ids) -> tuple[torch.Tensor, ...]:
    tokens, width = hidden.shape
    x = torch.empty(tokens, width, dtype=FP8, device=hidden.device)
    sf = torch.empty(tokens, width // 128, dtype=torch.int32, device=hidden.device)
    ids_out = torch.empty(ids.shape, dtype=torch.int64, device=hidden.device)
    weights_out = torch.empty_like(weights)
    gems("stage_deepseek_v4_mega_moe_inputs")(hidden, weights, ids, x, sf, ids_out, weights_out)
    return x.float(), sf, ids_out, weights_out


SPECS = [
    fused_spec(
        "combine_topk_swa_indices",
        "combine_topk_swa_indices",
        combine_topk_swa,
        combine_topk_swa_gems,
        cases=[
            Case("2 requests, 3 and 5 query tokens", T(sum(QUERY_LENS), TOPK, kind="int", high=40, **I32))
        ],
        dtypes=("fp32",),
        compare="exact",
        tags=("deepseek", "attention"),
    ),
    fused_spec(
        "compute_global_topk_indices_and_lens",
        "compute_global_topk_indices_and_lens",
        global_topk,
        global_topk_gems,
        cases=[
            Case(
                "5 tokens, top 6 of 12 (-1 = none)", T(len(TOKEN_REQ), 6, kind="int", low=-1, high=12, **I32)
            )
        ],
        dtypes=("fp32",),
        compare="exact",
        tags=("deepseek", "attention"),
    ),
    fused_spec(
        "dequantize_and_gather_k_cache",
        "dequantize_and_gather_k_cache",
        dequantize_gather,
        dequantize_gather_gems,
        cases=[
            Case(
                "2 requests gathering 5 and 10 keys of 128 fp8 + 64 bf16",
                T(CACHE_BLOCKS, BLOCK, NOPE, low=-8, high=8),
                T(CACHE_BLOCKS, BLOCK, SLOTS_PER_TOKEN, kind="int", low=120, high=131, dtype="int32"),
                T(CACHE_BLOCKS, BLOCK, ROPE),
            )
        ],
        dtypes=("bf16",),
        tags=("deepseek", "attention", "cache"),
    ),
    fused_spec(
        "stage_deepseek_v4_mega_moe_inputs",
        "stage_deepseek_v4_mega_moe_inputs",
        stage_moe,
        stage_moe_gems,
        cases=[
            Case(
                "6 tokens of 256, top 4",
                T(6, 256, low=-3, high=3),
                T(6, 4, low=0, high=1, dtype="fp32"),
                T(6, 4, kind="index", high=64, **I32),
            )
        ],
        dtypes=("bf16", "fp32"),
        tags=(*MOE, "deepseek", "quant"),
    ),
]


# ---------------------------------------------------------------- q norm + rope, kv rope + cache insert
ROPE_AT, HEAD_512, CACHE_PAGE = 448, 512, 16
INSERT_SLOTS = (17, 3, 30)  # distinct slots of a 2-page cache for 3 tokens


def gptj_rope_tail(x: torch.Tensor, cos_sin: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """GPT-J (interleaved pairs) rotation of the last 64 of 512 dims by the position's angles."""
    c = cos_sin[positions.long(), :32].to(x.dtype)
    s = cos_sin[positions.long(), 32:].to(x.dtype)
    if x.dim() == 3:
        c, s = c[:, None], s[:, None]
    even, odd = x[..., ROPE_AT::2], x[..., ROPE_AT + 1 :: 2]
    tail = torch.stack([even * c - odd * s, even * s + odd * c], -1).flatten(-2)
    return torch.cat([x[..., :ROPE_AT], tail], -1)


def qnorm_rope_kv_insert(q, kv, cos_sin, positions):
    """q: RMS-normalised over its 512 dims (no weight), then rope on the tail; kv: rope on the tail, then
    written to its slot of a paged cache. Returns (q, cache)."""
    qw = wide(q)
    qn = qw * torch.rsqrt(qw.pow(2).mean(-1, keepdim=True) + 1e-6)
    cache = torch.zeros(2, CACHE_PAGE, HEAD_512, dtype=kv.dtype, device=kv.device)
    rotated = gptj_rope_tail(wide(kv), cos_sin, positions).to(kv.dtype)
    for t, slot in enumerate(INSERT_SLOTS):
        cache[slot // CACHE_PAGE, slot % CACHE_PAGE] = rotated[t]
    return gptj_rope_tail(qn, cos_sin, positions).to(q.dtype), cache


def qnorm_rope_kv_insert_gems(q, kv, cos_sin, positions):
    q = q.clone()  # normalised and rotated in place
    cache = torch.zeros(2, CACHE_PAGE, HEAD_512, dtype=kv.dtype, device=kv.device)
    slots = torch.tensor(INSERT_SLOTS, dtype=torch.int64, device=kv.device)
    gems("fused_deepseek_v4_qnorm_rope_kv_rope_insert")(
        q, kv, cache, slots, positions, cos_sin, 1e-6, CACHE_PAGE
    )
    return q, cache


SPECS.append(
    fused_spec(
        "fused_deepseek_v4_qnorm_rope_kv_rope_insert",
        "fused_deepseek_v4_qnorm_rope_kv_rope_insert",
        qnorm_rope_kv_insert,
        qnorm_rope_kv_insert_gems,
        cases=[
            Case(
                "3 tokens, 2 q heads of 512",
                T(3, 2, HEAD_512),
                T(3, HEAD_512),
                T(16, 64, dtype="fp32"),
                T(3, kind="index", high=16),
            )
        ],
        dtypes=("bf16",),
        tags=("deepseek", "attention", "cache"),
    )
)


# ---------------------------------------------------------------- inverse rope + fp8 group quantisation
GROUPS, HEADS_PER_GROUP = 2, 2


def _ue8m0(scale: torch.Tensor) -> torch.Tensor:
    """The biased exponent of the smallest power of two >= scale (float32)."""
    mantissa, exponent = torch.frexp(scale)
    return exponent + 126 + (mantissa != 0.5).int()


def inv_rope_fp8_quant(o, cos_sin, positions):
    """The attention output un-rotated (inverse GPT-J rope on each head's last 64 dims), then quantised
    to fp8 per 128 values with power-of-two scales. Returns (fp8 values decoded, [tokens, groups,
    heads_per_group·512]; their exponents packed four per int32, one int32 per head)."""
    o = wide(o)
    c = cos_sin[positions.long(), :32].to(o.dtype)[:, None]
    s = cos_sin[positions.long(), 32:].to(o.dtype)[:, None]
    even, odd = o[..., ROPE_AT::2], o[..., ROPE_AT + 1 :: 2]
    tail = torch.stack([even * c + odd * s, odd * c - even * s], -1).flatten(-2)
    x = torch.cat([o[..., :ROPE_AT], tail], -1).unflatten(-1, (-1, 128))
    amax = x.abs().amax(-1).clamp(min=1e-10).float()
    exps = _ue8m0(amax * torch.tensor(1 / 448.0, dtype=torch.float32))  # the kernel's float32 product
    y = (x / torch.exp2(exps.to(x.dtype) - 127)[..., None]).clamp(-448, 448).to(FP8).float()
    packed = (exps.long() << torch.tensor([0, 8, 16, 24], device=o.device)).sum(-1).to(torch.int32)
    tokens = o.shape[0]
    return y.reshape(tokens, GROUPS, -1), packed.reshape(tokens, GROUPS, HEADS_PER_GROUP)


def inv_rope_fp8_quant_gems(o, cos_sin, positions):
    y, scales = gems("fused_inv_rope_fp8_quant")(
        o, positions, cos_sin, GROUPS, HEADS_PER_GROUP, tma_aligned_scales=True
    )
    return y.float(), scales


SPECS.append(
    fused_spec(
        "fused_inv_rope_fp8_quant",
        "fused_inv_rope_fp8_quant",
        inv_rope_fp8_quant,
        inv_rope_fp8_quant_gems,
        cases=[
            Case(
                "3 tokens, 2 groups of 2 heads of 512",
                T(3, GROUPS * HEADS_PER_GROUP, HEAD_512, low=-3, high=3),
                T(16, 64, dtype="fp32"),
                T(3, kind="index", high=16),
            )
        ],
        dtypes=("bf16",),
        # fp8 keeps 3 mantissa bits: where float32 and float64 round a value to different sides of an
        # fp8 step, the results differ by that step (2^-3 relative); anything larger is a real error
        rtol={"bf16": 2**-3},
        tags=("deepseek", "attention", "quant"),
    )
)


# ---------------------------------------------------------------- sparse indexer: q rope + fp8 quant
IDX_HEADS, IDX_DIM, IDX_ROPE = 4, 128, 64
SOFTMAX_SCALE, HEAD_SCALE = 0.125, 0.5


def indexer_q_rope_quant(q, cos_sin, positions, weights):
    """GPT-J rope on each head's last 64 dims (rounded to bf16, as the kernel stores it), then fp8 with
    one power-of-two scale per token and head, folded into the weights: (q fp8 decoded, weights ·
    scale · softmax_scale · head_scale)."""
    x = wide(q)
    c = cos_sin[positions.long(), : IDX_ROPE // 2].to(x.dtype)[:, None]
    s = cos_sin[positions.long(), IDX_ROPE // 2 :].to(x.dtype)[:, None]
    at = IDX_DIM - IDX_ROPE
    even, odd = x[..., at::2], x[..., at + 1 :: 2]
    tail = torch.stack([even * c - odd * s, odd * c + even * s], -1).flatten(-2)
    x = torch.cat([x[..., :at], tail.to(torch.bfloat16).to(x.dtype)], -1)
    amax = x.abs().amax(-1).clamp(min=1e-4).float()
    exps = _ue8m0(amax / 448.0)
    scale = torch.exp2(exps.to(x.dtype) - 127)
    y = (x / scale[..., None]).to(FP8).float()
    return y, (weights * scale * SOFTMAX_SCALE * HEAD_SCALE).float()


def indexer_q_rope_quant_gems(q, cos_sin, positions, weights):
    y, w = gems("fused_indexer_q_rope_quant")(positions, q, cos_sin, weights, SOFTMAX_SCALE, HEAD_SCALE)
    return y.float(), w


SPECS.append(
    fused_spec(
        "fused_indexer_q_rope_quant",
        "fused_indexer_q_rope_quant",
        indexer_q_rope_quant,
        indexer_q_rope_quant_gems,
        cases=[
            Case(
                "3 tokens, 4 heads of 128",
                T(3, IDX_HEADS, IDX_DIM, low=-3, high=3),
                T(16, IDX_ROPE, dtype="fp32"),
                T(3, kind="index", high=16),
                T(3, IDX_HEADS, dtype="fp32"),
            )
        ],
        dtypes=("bf16",),
        rtol={"bf16": 2**-3},  # one fp8 step, as for fused_inv_rope_fp8_quant
        tags=("deepseek", "attention", "quant"),
    )
)
