"""Fused FlagGems operators outside aten (kernels/fused_*.py): the ones vLLM and vllm-plugin-FL call
directly. This module holds what those spec files share; it declares no spec.

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
from collections.abc import Callable
from typing import Any

import torch

from portability.spec import OpSpec

# Qwen3-30B-A3B's MoE layer, for the routing/expert helpers.
MOE_HIDDEN, MOE_EXPERTS, MOE_TOPK, MOE_WIDTH = 2048, 128, 8, 768
WEIGHT = {"low": 0.5, "high": 1.5}

# op name -> FlagGems function the spec's impls["flaggems"] calls (dotted below `flag_gems`).
TARGETS: dict[str, str] = {}


def gems(path: str) -> Callable[..., Any]:
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


def halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = x.shape[-1] // 2
    return x[..., :d], x[..., d:]


VLLM = ("vllm-fl",)
MOE = ("moe",)
