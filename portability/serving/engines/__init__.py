"""Serving engines, one module each. An engine answers `probe(backend, device)` in the runner's process
(cheap: no engine is started) and does the real work in a worker subprocess (`worker.py`):
`throughput(spec)`, `logprobs(spec)`, and for OpenAI-serving engines `server_command(spec, port)` plus
`online(spec)`, the client side of the latency benchmark."""

from __future__ import annotations

import importlib

from portability.serving.engines.base import ServingEngine

ENGINES: dict[str, str] = {
    "vllm": "portability.serving.engines.vllm:VllmEngine",
    "vllm-fl": "portability.serving.engines.vllm_fl:VllmFLEngine",
    "hf": "portability.serving.engines.hf:HFEngine",
}


def get_engine(name: str) -> ServingEngine:
    module, _, cls = ENGINES[name].partition(":")
    return getattr(importlib.import_module(module), cls)()


__all__ = ["ENGINES", "ServingEngine", "get_engine"]
