"""Fused FlagGems operators outside aten (kernels/fused/*.py): the ones vLLM and vllm-plugin-FL call
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

import ast
import contextlib
import importlib
import importlib.metadata
import importlib.util
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import torch

from portability.spec import OpSpec

# Qwen3-30B-A3B's MoE layer, for the routing/expert helpers.
MOE_HIDDEN, MOE_EXPERTS, MOE_TOPK, MOE_WIDTH = 2048, 128, 8, 768
WEIGHT = {"low": 0.5, "high": 1.5}

# op name -> FlagGems function the spec's impls["flaggems"] calls (dotted below `flag_gems`).
TARGETS: dict[str, str] = {}
# The same for the Qwen3-path specs (kernels/qwen3/) whose impls call a FlagGems function directly.
QWEN3_TARGETS: dict[str, str] = {
    "silu_and_mul": "silu_and_mul",
    "fused_add_rms_norm": "fused_add_rms_norm",
    "rotary_embedding": "apply_rotary_pos_emb",
    "scaled_dot_product_attention": "scaled_dot_product_attention",
}


def all_targets() -> dict[str, str]:
    """Every spec that calls a FlagGems function directly -> that function (dotted below flag_gems)."""
    return {**TARGETS, **QWEN3_TARGETS}


def gems(path: str) -> Callable[..., Any]:
    """`flag_gems.<path>` resolved at call time (e.g. "topk_softmax", "modules.rotary_embedding.x"). A
    FlagGems that lacks it (an older release) raises FusedFunctionAbsent, which says so."""

    def call(*args: Any, **kwargs: Any) -> Any:
        obj: Any = importlib.import_module("flag_gems")
        for part in path.split("."):
            try:
                obj = (
                    getattr(obj, part)
                    if hasattr(obj, part)
                    else importlib.import_module(f"{obj.__name__}.{part}")
                )
            except ImportError:
                raise FusedFunctionAbsent(absent_reason(path) or f"flag_gems has no {path}") from None
        return obj(*args, **kwargs)

    call.__name__ = f"flag_gems.{path}"
    return call


class FusedFunctionAbsent(LookupError):
    """The installed FlagGems has no such fused function: unsupported there, not an operator error."""


def absent_reason(target: str, root: Path | None = None) -> str | None:
    """Why the installed flag_gems (or the package folder `root`) cannot run `flag_gems.<target>`, or
    None if it exports it. Read from the package's source, never imported (no device needed): a top-level
    name must be in flag_gems.fused's or flag_gems.ops' `__all__`, a dotted one must name a module file."""
    if root is None:
        spec = importlib.util.find_spec("flag_gems")
        if spec is None or spec.origin is None:
            return "flag_gems is not installed"
        root = Path(spec.origin).parent
    *module, name = target.split(".")
    if module:
        found = (root / Path(*module)).with_suffix(".py").is_file() or (root / Path(*module)).is_dir()
    else:
        found = any(name in _public(root / package / "__init__.py") for package in ("fused", "ops"))
    return (
        None if found else f"flag_gems {_version(root)} has no function {target} (added in a later FlagGems)"
    )


@cache
def _public(init: Path) -> frozenset[str]:
    """The `__all__` names of a package's __init__.py (empty when there is none)."""
    if not init.is_file():
        return frozenset()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "__all__":
            return frozenset(e.value for e in getattr(node.value, "elts", []) if isinstance(e, ast.Constant))
    return frozenset()


def _version(root: Path) -> str:
    """The version of the flag_gems package folder `root` (its dist-info beside it, else the installed)."""
    for info in sorted(root.parent.glob("flag_gems-*.dist-info")):
        return info.name.split("-")[1]
    for dist in ("flag_gems", "flag-gems"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(dist)
    return f"at {root}"


def absent_targets(root: Path | None = None) -> dict[str, str]:
    """Spec name -> why the installed FlagGems cannot run it, for each spec whose function it lacks
    (what a backend reports as unsupported)."""
    return {name: why for name, target in all_targets().items() if (why := absent_reason(target, root))}


def fused_function_specs(root: Path | None = None) -> dict[str, list[str]]:
    """Every function flag_gems.fused exports (`__all__` of the installed package, or of the package
    folder `root`) -> the specs that call it (empty list: none yet)."""
    if root is None:
        spec = importlib.util.find_spec("flag_gems")
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError("flag_gems is not installed")
        root = Path(spec.origin).parent
    found: dict[str, list[str]] = {name: [] for name in sorted(_public(root / "fused" / "__init__.py"))}
    for spec_name, target in sorted(all_targets().items()):
        if target in found:
            found[target].append(spec_name)
    return found


def fused_spec(name: str, target: str, fn: Callable[..., Any], impl: Callable[..., Any], **kw: Any) -> OpSpec:
    TARGETS[name] = target
    tags = ("fused", *kw.pop("tags", ()))
    return OpSpec(name, fn, impls={"flaggems": impl}, tags=tags, **kw)


def halves(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = x.shape[-1] // 2
    return x[..., :d], x[..., d:]


VLLM = ("vllm-fl",)
MOE = ("moe",)
