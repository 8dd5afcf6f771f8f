"""A seeded synthetic checkpoint for the accuracy gate.

vLLM's dummy weights are uniform in ±1e-3, which makes every logit equal (every prompt position of
Qwen3-4B comes out at logprob −ln(151936)), so a gate on them passes any kernel that does not produce NaN.
These weights are drawn at a realistic scale instead (normal, std 0.02 like transformers' init; norms at
1) from a fixed seed, written once as safetensors beside a copy of the shipped config, and loaded normally
by every engine, so all engines see the same weights and the logits carry information.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from portability.serving import model_config_dir

STD = 0.02


def parameter_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Qwen3ForCausalLM's parameters, in Hugging Face naming."""
    h, i, v = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    d, nq, nkv = config["head_dim"], config["num_attention_heads"], config["num_key_value_heads"]
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h), "model.norm.weight": (h,)}
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}."
        shapes.update(
            {
                p + "input_layernorm.weight": (h,),
                p + "post_attention_layernorm.weight": (h,),
                p + "self_attn.q_proj.weight": (nq * d, h),
                p + "self_attn.k_proj.weight": (nkv * d, h),
                p + "self_attn.v_proj.weight": (nkv * d, h),
                p + "self_attn.o_proj.weight": (h, nq * d),
                p + "self_attn.q_norm.weight": (d,),
                p + "self_attn.k_norm.weight": (d,),
                p + "mlp.gate_proj.weight": (i, h),
                p + "mlp.up_proj.weight": (i, h),
                p + "mlp.down_proj.weight": (h, i),
            }
        )
    if not config.get("tie_word_embeddings", False):
        shapes["lm_head.weight"] = (v, h)
    return shapes


def default_cache() -> Path:
    return Path(os.environ.get("PORTABILITY_CACHE", Path.home() / ".cache" / "flagos-portability"))


def synthetic_checkpoint(model: str, seed: int = 0, cache: Path | None = None) -> Path:
    """The directory of the synthetic checkpoint for a shipped model config (written on first use)."""
    from safetensors.torch import save_file

    target = (cache or default_cache()) / f"{model}-synthetic-seed{seed}"
    if (target / "model.safetensors").exists():
        return target
    config = json.loads((model_config_dir(model) / "config.json").read_text())
    dtype = getattr(torch, config.get("torch_dtype", "bfloat16"))
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in parameter_shapes(config).items():
        if name.endswith("norm.weight"):
            tensors[name] = torch.ones(shape, dtype=dtype)
        else:
            tensors[name] = (torch.randn(shape, generator=gen) * STD).to(dtype)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    # One metadata key only: safetensors writes metadata in hash-map order, so a second key would make
    # the bytes (not the weights) differ from run to run. The seed is in the directory name.
    save_file(tensors, str(partial / "model.safetensors"), metadata={"format": "pt"})
    shutil.copy(model_config_dir(model) / "config.json", partial / "config.json")
    partial.rename(target)  # appears whole or not at all
    return target
