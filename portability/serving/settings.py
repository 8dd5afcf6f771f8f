"""The `serving:` block of matrix.yaml."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

ENGINES = ("vllm",)
KEYS = (
    "engines",
    "backends",
    "model",
    "input_len",
    "output_len",
    "num_prompts",
    "max_num_seqs",
    "kv_cache_memory_bytes",
    "enforce_eager",
    "gate",
    "timeout_s",
    "seed",
)
GATE_KEYS = ("max_abs_logprob_diff", "mean_kl", "prompts", "prompt_len")


@dataclass
class GateSettings:
    max_abs_logprob_diff: float = 0.05
    mean_kl: float = 1e-3
    prompts: int = 4
    prompt_len: int = 64


@dataclass
class ServingSettings:
    engines: list[str] = field(default_factory=lambda: ["vllm"])
    backends: list[str] = field(default_factory=lambda: ["torch", "flaggems"])
    model: str = "qwen3-tiny"
    input_len: int = 512
    output_len: int = 128
    num_prompts: int = 64
    max_num_seqs: int = 64
    kv_cache_memory_bytes: int = 2 * 2**30
    enforce_eager: bool = True
    gate: GateSettings = field(default_factory=GateSettings)
    timeout_s: float = 900
    seed: int = 0


def validate_serving(
    block: dict[str, Any], error: Callable[[tuple, str, str], NoReturn]
) -> ServingSettings | None:
    """An empty block means no serving; anything else is checked key by key."""
    if not block:
        return None
    for key in block:
        if key not in KEYS:
            error((key,), f"unknown key '{key}' in serving", f"one of {', '.join(KEYS)}")
    s = ServingSettings()
    for key in ("input_len", "output_len", "num_prompts", "max_num_seqs", "kv_cache_memory_bytes", "seed"):
        if key in block:
            value = block[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "seed" else 1):
                error((key,), f"{key} is {value!r}", "a positive integer")
            setattr(s, key, value)
    if "timeout_s" in block:
        value = block["timeout_s"]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            error(("timeout_s",), f"timeout_s is {value!r}", "a number > 0")
        s.timeout_s = float(value)
    for key, allowed in (("engines", ENGINES), ("backends", None)):
        if key in block:
            value = block[key]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                error((key,), f"{key} is {value!r}", "a list of names")
            for i, v in enumerate(value):
                if allowed and v not in allowed:
                    error((key, i), f"unknown engine '{v}'", f"one of {', '.join(allowed)}")
            setattr(s, key, list(value))
    if "model" in block:
        from portability.serving import MODELS_DIR

        model = block["model"]
        if not isinstance(model, str) or not (
            (MODELS_DIR / model / "config.json").exists() or model.startswith("/")
        ):
            shipped = ", ".join(sorted(p.name for p in MODELS_DIR.iterdir() if p.is_dir()))
            error(
                ("model",),
                f"unknown model {model!r}",
                f"one of {shipped}, or an absolute path to real weights",
            )
        s.model = model
    if "enforce_eager" in block:
        if not isinstance(block["enforce_eager"], bool):
            error(("enforce_eager",), f"enforce_eager is {block['enforce_eager']!r}", "true or false")
        s.enforce_eager = block["enforce_eager"]
    gate = block.get("gate", {}) or {}
    if not isinstance(gate, dict):
        error(("gate",), "gate is not a mapping", f"a mapping with {', '.join(GATE_KEYS)}")
    for key, value in gate.items():
        if key not in GATE_KEYS:
            error(("gate", key), f"unknown key '{key}' in serving.gate", f"one of {', '.join(GATE_KEYS)}")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            error(("gate", key), f"{key} is {value!r}", "a number > 0")
        setattr(s.gate, key, type(getattr(s.gate, key))(value))
    return s
