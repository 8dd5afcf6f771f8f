"""The context shared by the steps of a serving run: settings, model config, prompts and checkpoint.

`CellContext` is built once per serving run (the first available cell) and handed to every step. It reads
the model's config (shipped, or the real-weights directory), resolves the gate's top-k against the vocabulary,
draws the seeded prompts for the throughput/online runs and for the accuracy gate, writes the synthetic
checkpoint on first use, and turns (engine, backend, device, mode) into the JSON spec a worker process runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from portability.serving import model_config_dir
from portability.serving.checkpoint import synthetic_checkpoint
from portability.serving.gate import resolve_top_k
from portability.serving.prompts import text_prompts, token_prompts
from portability.serving.settings import ServingSettings


class CellContext:
    """Everything one serving run needs, shared by its steps."""

    def __init__(self, settings: ServingSettings, out: Path) -> None:
        self.s = settings
        self.logs = out / "logs"
        real = settings.real_weights
        self.config_dir = Path(settings.model) if real else model_config_dir(settings.model)
        self.config = json.loads((self.config_dir / "config.json").read_text())
        self.vocab = self.config["vocab_size"]
        self.top_k = resolve_top_k(settings.gate.top_k, self.vocab)
        if real:
            d = str(self.config_dir)
            self.prompts = text_prompts(d, settings.num_prompts, settings.input_len)
            self.gate_prompts = text_prompts(d, settings.gate.prompts, settings.gate.prompt_len)
        else:
            self.prompts = token_prompts(settings.num_prompts, settings.input_len, self.vocab, settings.seed)
            self.gate_prompts = token_prompts(
                settings.gate.prompts, settings.gate.prompt_len, self.vocab, settings.seed + 1
            )
        self._ckpt: Path | None = None

    def checkpoint(self) -> Path:
        if self.s.real_weights:
            return self.config_dir
        if self._ckpt is None:
            self._ckpt = synthetic_checkpoint(self.s.model, self.s.seed)
        return self._ckpt

    def env(self, engine: Any, backend: str, include: list[str] | None = None) -> dict[str, str]:
        """The environment of a run of `engine` on `backend`: FlagGems limited to `include` (a bisection
        subset) if given, else all of it but `serving.flaggems_exclude`."""
        return engine.env(backend, include=include, exclude=self.s.flaggems_exclude)

    def spec(self, engine: str, backend: str, device: str, mode: str, **over: Any) -> dict[str, Any]:
        s = self.s
        dtype = s.dtype if s.dtype != "auto" else ("float32" if device.split(":")[0] == "cpu" else "bfloat16")
        spec = {
            "engine": engine,
            "backend": backend,
            "device": device,
            "mode": mode,
            "model_dir": str(self.config_dir),
            "weights": "real" if s.real_weights else s.throughput_weights,
            "tokenizer": s.real_weights,
            "served_name": s.model_name,
            "dtype": dtype,
            "seed": s.seed,
            "input_len": s.input_len,
            "output_len": s.output_len,
            "max_num_seqs": s.max_num_seqs,
            "concurrency": s.concurrency,
            "kv_cache_memory_bytes": s.kv_cache_memory_bytes,
            "gpu_memory_utilization": s.gpu_memory_utilization,
            "enforce_eager": s.enforce_eager,
            "tensor_parallel_size": 1,
            "max_model_len": max(s.input_len + s.output_len, s.gate.prompt_len + 1),
            "prompts": self.prompts,
            "top_k": self.top_k,
        }
        if spec["weights"] == "synthetic" or (engine == "hf" and spec["weights"] == "dummy"):
            spec.update(model_dir=str(self.checkpoint()), weights="synthetic")
        if mode == "logprobs":
            spec.update(
                prompts=self.gate_prompts,
                dtype=s.gate.dtype,
                model_dir=str(self.checkpoint()),
                weights="real" if s.real_weights else "synthetic",
            )
        spec.update(over)
        return spec
