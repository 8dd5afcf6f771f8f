"""FP8 quantisation helpers of FlagGems 5.3 outside aten (kernels/fused/_common.py): block-wise activation
quantisation, the CUTLASS-style scaled matmul, and the DeepSeek sparse-attention indexer's fp8 key cache
(write and gather). Quantised results are compared decoded to float (the same fp8 rounding on both sides:
power-of-two "ue8m0" scales make the division exact, so the rounding cannot differ); byte-moving ops are
compared byte for byte."""

from __future__ import annotations

import torch
from portability.kernels.fused._common import fused_spec, gems

from portability.spec import Case, T

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0


def pow2_scale(amax: torch.Tensor) -> torch.Tensor:
    """The ue8m0 scale: the smallest power of two >= max(amax, 1e-4) / 448."""
    return torch.exp2(torch.ceil(torch.log2(amax.clamp(min=1e-4) / FP8_MAX)))


def act_quant(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, per `block` columns: y = x / scale rounded to fp8 e4m3, scale a power of two; returns
    (y decoded to float32, scales)."""
    blocks = x.unflatten(-1, (-1, block))
    scale = pow2_scale(blocks.abs().amax(-1))
    y = (blocks / scale[..., None]).clamp(-FP8_MAX, FP8_MAX).to(FP8)
    return y.flatten(-2).float(), scale.float()


def act_quant_gems(x: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    y, s = gems("act_quant_triton")(x, block, "ue8m0")
    return y.float(), s


def scaled_mm(a, b_t, a_scale, b_scale, bias):
    """c = a_scale · b_scale · (fp8(a) @ fp8(b)) + bias, in the dtype of a (vLLM's cutlass_scaled_mm)."""
    acc = a.to(FP8).to(a_scale.dtype) @ b_t.to(FP8).to(a_scale.dtype).T
    return (acc * a_scale * b_scale + bias.to(a_scale.dtype)).to(a.dtype)


def scaled_mm_gems(a, b_t, a_scale, b_scale, bias):
    c = torch.empty(a.shape[0], b_t.shape[0], dtype=a.dtype, device=a.device)
    b = b_t.to(FP8).T  # (K, N), column-major as the kernel requires
    gems("cutlass_scaled_mm")(c, a.to(FP8), b, a_scale, b_scale, bias)
    return c


# The indexer's key cache: per block, block_size rows of head_dim fp8 bytes, then their float32 scales.
BLOCKS, BLOCK_SIZE, HEAD_DIM, QUANT_BLOCK = 6, 4, 32, 16
SCALES = HEAD_DIM // QUANT_BLOCK
SLOTS = (9, 2, 20, 15, 0, 22, 7)  # distinct cache slots of 7 tokens


def _empty_cache(device: torch.device) -> torch.Tensor:
    return torch.zeros(BLOCKS, BLOCK_SIZE, HEAD_DIM + 4 * SCALES, dtype=torch.uint8, device=device)


def _decode_cache(cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    flat = cache.view(BLOCKS, -1)
    values = flat[:, : BLOCK_SIZE * HEAD_DIM].view(FP8).float()
    return values, flat[:, BLOCK_SIZE * HEAD_DIM :].contiguous().view(torch.float32)


def k_quant_and_cache(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each token's key quantised in blocks of QUANT_BLOCK (ue8m0 scales) into its slot of the cache."""
    cache = _empty_cache(k.device)
    flat = cache.view(BLOCKS, -1)
    blocks = k.unflatten(-1, (SCALES, QUANT_BLOCK))
    scale = pow2_scale(blocks.abs().amax(-1)).float()
    y = (blocks / scale[..., None]).to(FP8).flatten(-2)
    for t, slot in enumerate(SLOTS):
        b, off = divmod(slot, BLOCK_SIZE)
        flat[b, off * HEAD_DIM : (off + 1) * HEAD_DIM] = y[t].view(torch.uint8)
        at = BLOCK_SIZE * HEAD_DIM + off * SCALES * 4
        flat[b, at : at + SCALES * 4] = scale[t].contiguous().view(torch.uint8)
    return _decode_cache(cache)


def k_quant_and_cache_gems(k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    cache = _empty_cache(k.device)
    slots = torch.tensor(SLOTS, dtype=torch.int64, device=k.device)
    gems("indexer_k_quant_and_cache")(k, cache, slots, QUANT_BLOCK, "ue8m0")
    return _decode_cache(cache)


BLOCK_TABLE = ((4, 1, 5), (0, 3, 2))
SEQ_LENS = (7, 5)


def gather_k_cache(cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each request's keys (bytes) and scales (bytes) gathered from the paged cache in token order."""
    flat = cache.view(BLOCKS, -1)
    values, scales = [], []
    for row, n in zip(BLOCK_TABLE, SEQ_LENS, strict=True):
        for t in range(n):
            b, off = row[t // BLOCK_SIZE], t % BLOCK_SIZE
            values.append(flat[b, off * HEAD_DIM : (off + 1) * HEAD_DIM])
            at = BLOCK_SIZE * HEAD_DIM + off * SCALES * 4
            scales.append(flat[b, at : at + SCALES * 4])
    return torch.stack(values), torch.stack(scales)


def gather_k_cache_gems(cache: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dev, tokens = cache.device, sum(SEQ_LENS)
    k = torch.empty(tokens, HEAD_DIM, dtype=torch.int8, device=dev)
    scales = torch.empty(tokens, SCALES * 4, dtype=torch.int8, device=dev)
    table = torch.tensor(BLOCK_TABLE, dtype=torch.int32, device=dev)
    cu = torch.tensor([0, SEQ_LENS[0], sum(SEQ_LENS)], dtype=torch.int32, device=dev)
    gems("cp_gather_indexer_k_quant_cache")(cache.view(torch.uint8), k, scales, table, cu)
    return k, scales


SPECS = [
    fused_spec(
        "act_quant_triton",
        "act_quant_triton",
        lambda x: act_quant(x, 128),
        lambda x: act_quant_gems(x, 128),
        cases=[Case("5x256 in blocks of 128", T(5, 256, low=-3, high=3))],
        dtypes=("fp32", "bf16"),
        tags=("quant", "deepseek"),
    ),
    fused_spec(
        "cutlass_scaled_mm",
        "cutlass_scaled_mm",
        scaled_mm,
        scaled_mm_gems,
        cases=[
            Case(
                "16x64 @ 64x32, per-tensor scales, bias",
                T(16, 64),
                T(32, 64),
                T(1, low=0.5, high=1.5, dtype="fp32"),
                T(1, low=0.5, high=1.5, dtype="fp32"),
                T(32),
            )
        ],
        dtypes=("bf16", "fp16"),
        atol={"bf16": 5e-2, "fp16": 1e-2},
        tags=("quant", "linear"),
    ),
    fused_spec(
        "indexer_k_quant_and_cache",
        "indexer_k_quant_and_cache",
        k_quant_and_cache,
        k_quant_and_cache_gems,
        cases=[Case("7 keys of 32 into 6 blocks of 4", T(len(SLOTS), HEAD_DIM, low=-3, high=3))],
        dtypes=("fp32", "bf16"),
        tags=("quant", "deepseek", "cache"),
    ),
    fused_spec(
        "cp_gather_indexer_k_quant_cache",
        "cp_gather_indexer_k_quant_cache",
        gather_k_cache,
        gather_k_cache_gems,
        cases=[
            Case(
                "2 requests of 7 and 5 tokens",
                T(BLOCKS, BLOCK_SIZE, HEAD_DIM + 4 * SCALES, kind="int", low=-128, high=128, dtype="int8"),
            )
        ],
        dtypes=("fp32",),
        compare="exact",
        tags=("quant", "deepseek", "cache"),
    ),
]
