"""Indexing and data movement: embedding lookup, gathers/scatters, concatenation, sorting, top-k."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from portability.kernels.qwen3._model import HEAD_DIM, HIDDEN, KV_HEADS, Q_HEADS, VOCAB

from portability.spec import Case, OpSpec, T

QWEN = ("qwen3", "indexing")
LOGITS = {"low": -20.0, "high": 20.0}


def permutation(n: int, device: torch.device) -> torch.Tensor:
    """i -> (7·i + 3) mod n: a permutation whenever 7 does not divide n."""
    return (torch.arange(n, device=device) * 7 + 3) % n


def ids(*shape: int, high: int = VOCAB) -> T:
    return T(*shape, kind="index", low=0, high=high)


SPECS = [
    OpSpec(
        "embedding",
        F.embedding,
        cases=[
            Case("decode 8 tokens, vocab 151936x2560", ids(8), T(VOCAB, HIDDEN)),
            Case("prefill 512 tokens, 32768x2560", ids(1, 512, high=32768), T(32768, HIDDEN)),
            Case("empty", ids(0, high=16), T(16, 8)),
        ],
        flaggems=("embedding",),
        tags=(*QWEN, "smoke"),
        bytes=lambda c, d, out: 2 * out.numel() * out.element_size(),
    ),
    OpSpec(
        "index_select",
        lambda x, idx: torch.index_select(x, 0, idx),
        cases=[
            Case("last tokens 8 of 512x2560", T(512, HIDDEN), ids(8, high=512)),
            Case("odd 13 of 7x13", T(7, 13), ids(13, high=7)),
            Case("empty", T(4, 8), ids(0, high=4)),
        ],
        flaggems=("index_select",),
        tags=QWEN,
    ),
    OpSpec(
        "gather",
        lambda x, idx: torch.gather(x, -1, idx),
        cases=[
            Case("token logprobs 8x151936", T(8, VOCAB), ids(8, 1)),
            Case("sorted indices 8x1024", T(8, 1024), ids(8, 1024, high=1024)),
            Case("transposed 33x65", T(33, 65, layout="transposed"), ids(33, 10, high=65)),
        ],
        flaggems=("gather",),
        tags=(*QWEN, "sampling"),
    ),
    OpSpec(
        "scatter",
        # a fixed permutation as destinations: every position written once, so the result is well defined
        lambda x, src: torch.scatter(x, -1, permutation(x.shape[-1], x.device).expand_as(src), src),
        cases=[
            Case("unsort probs 8x4096 (permuted)", T(8, 4096), T(8, 4096)),
            Case("odd 3x17 (permuted)", T(3, 17), T(3, 17)),
        ],
        flaggems=("scatter",),
        tags=(*QWEN, "sampling"),
    ),
    OpSpec(
        "cat",
        lambda a, b: torch.cat([a, b], dim=-1),
        cases=[
            Case("rope halves 512x32x64", T(512, Q_HEADS, HEAD_DIM // 2), T(512, Q_HEADS, HEAD_DIM // 2)),
            Case("kv append 8x1024 + 8x1", T(8, KV_HEADS, 1023), T(8, KV_HEADS, 1)),
            Case("transposed 33x65", T(33, 65, layout="transposed"), T(33, 7)),
            Case("empty", T(0, 4), T(0, 4)),
        ],
        flaggems=("cat",),
        tags=(*QWEN, "smoke"),
    ),
    OpSpec(
        "repeat_interleave_kv",
        lambda kv: torch.repeat_interleave(kv, Q_HEADS // KV_HEADS, dim=1),
        cases=[
            Case("gqa 1x8x512x128", T(1, KV_HEADS, 512, HEAD_DIM)),
            Case("decode 8x8x1x128", T(8, KV_HEADS, 1, HEAD_DIM)),
        ],
        flaggems=("repeat_interleave_self_int",),
        tags=QWEN,
    ),
    OpSpec(
        "topk",
        lambda x, k: torch.topk(x, k, dim=-1),
        cases=[
            Case("top-50 of logits 8x151936", T(8, VOCAB, **LOGITS), 50),
            Case("top-50 of 1x151936", T(1, VOCAB, **LOGITS), 50),
            # vLLM's prompt logprobs in the serving gate: 2 prompts x 63 positions, top-256
            Case("top-256 of 63x151936", T(63, VOCAB, **LOGITS), 256),
            Case("ties 4x100", T(4, 100, kind="ties", low=0, high=5), 50),
        ],
        flaggems=("topk",),
        tags=(*QWEN, "sampling", "smoke"),
        compare="values_of_indices",
    ),
    OpSpec(
        "sort",
        lambda x: torch.sort(x, dim=-1, descending=True),
        cases=[
            Case("logits 8x151936", T(8, VOCAB, **LOGITS)),
            Case("odd 7x13", T(7, 13)),
            Case("one", T(1, 1)),
        ],
        flaggems=("sort",),
        tags=(*QWEN, "sampling"),
        compare="values_of_indices",
    ),
]
