"""`hf`: transformers' Qwen3ForCausalLM with a static KV cache and greedy decoding, for hosts without
vLLM (transformers >= 4.51 has the Qwen3 classes). Backend `flaggems` switches FlagGems on in the
worker process (`flag_gems.enable()`, or `only_enable(include=...)` for a bisection subset) before the
model is built. transformers has no dummy-weight loader, so throughput runs load the synthetic
checkpoint (same shapes and cost). In float32 on the CPU this engine is also the gate's reference.
"""

from __future__ import annotations

import time
from typing import Any

from portability.backends.base import Availability, package_version
from portability.serving.engines import flaggems_hook
from portability.serving.engines.base import ServingEngine, throughput_figures

MIN_TRANSFORMERS = (4, 51)


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:2]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


class HFEngine(ServingEngine):
    name = "hf"
    packages = ("transformers", "torch", "flag-gems", "triton")
    profiles_steps = True

    def probe(self, backend: str, device: str) -> Availability:
        base = super().probe(backend, device)
        if not base.available:
            return base
        version = package_version("transformers")
        if version is None:
            return Availability.unavailable(
                "transformers is not installed (pip install 'transformers>=4.51')"
            )
        if _version_tuple(version) < MIN_TRANSFORMERS:
            return Availability.unavailable(f"transformers {version} has no Qwen3 classes (needs >= 4.51)")
        return Availability.ok()

    def env(
        self, backend: str, include: list[str] | None = None, exclude: list[str] | None = None
    ) -> dict[str, str]:
        return self.flaggems_env(include, exclude) if backend == "flaggems" else {}

    # -- worker side ---------------------------------------------------------------------------------
    def _model(self, spec: dict[str, Any]) -> Any:
        import torch
        import transformers
        from transformers import Qwen3ForCausalLM

        enabled = flaggems_hook.enable_from_env()
        if spec["backend"] == "flaggems" and enabled is None:
            raise RuntimeError("backend flaggems asked, but FlagGems was not switched on")
        dtype = getattr(torch, spec["dtype"])
        key = "dtype" if _version_tuple(transformers.__version__) >= (4, 56) else "torch_dtype"
        model = Qwen3ForCausalLM.from_pretrained(spec["model_dir"], **{key: dtype})
        return model.to(spec["device"]).eval()

    def throughput(self, spec: dict[str, Any]) -> dict[str, Any]:
        import torch

        from portability import devices

        device = spec["device"]
        t0 = time.perf_counter()
        model = self._model(spec)
        devices.synchronize(device)
        startup = time.perf_counter() - t0
        n = spec["max_num_seqs"]
        chunks = [spec["prompts"][i : i + n] for i in range(0, len(spec["prompts"]), n)]

        def generate(chunk: list[list[int]]) -> int:
            ids = torch.tensor(chunk, device=device)
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=spec["output_len"],
                min_new_tokens=spec["output_len"],
                do_sample=False,
                cache_implementation="static",
                disable_compile=True,  # eager: a compiled forward would bypass FlagGems
                pad_token_id=0,
            )
            return int(out.shape[0] * (out.shape[1] - ids.shape[1]))

        with torch.inference_mode():
            t0 = time.perf_counter()
            generate(chunks[0])  # same shapes as the timed batches: FlagGems autotunes here
            devices.synchronize(device)
            warmup = time.perf_counter() - t0
            t0 = time.perf_counter()
            out_tokens = sum(generate(c) for c in chunks)
            devices.synchronize(device)
            elapsed = time.perf_counter() - t0
        in_tokens = sum(len(p) for p in spec["prompts"])
        result = throughput_figures(startup, warmup, elapsed, len(spec["prompts"]), in_tokens, out_tokens)
        if spec.get("profile"):  # the loaded, warm model: no second start-up for the step profile
            result["profile"] = self._profile(model, spec)
        return result

    def dispatched_ops(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The aten operators a short generation runs (torch backend, the spec's prompts), nested calls
        included (`linear` → `addmm`, `to` → `_to_copy`): the FlagGems operators worth bisecting are
        those registered for them, not all of FlagGems. Recorded with torch's profiler, which sees every
        aten call on the host side; a TorchDispatchMode would see only the outermost ones."""
        import torch
        from torch.profiler import ProfilerActivity, profile

        model = self._model(spec)
        ids = torch.tensor(spec["prompts"][:2], device=spec["device"])
        with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
            model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=2,
                min_new_tokens=2,
                do_sample=False,
                cache_implementation="static",
                disable_compile=True,  # eager: a compiled forward would bypass FlagGems
                pad_token_id=0,
            )
        names = {e.name.removeprefix("aten::") for e in prof.events() if e.name.startswith("aten::")}
        return {"dispatched": sorted(names)}

    def profile(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._profile(self._model(spec), spec)

    def _profile(self, model: Any, spec: dict[str, Any]) -> dict[str, Any]:
        """One steady-state prefill step (the batch's prompts) and decode step (one token per sequence,
        on the cache that prefill left), profiled after warm-up (`step_profile.profile_steps`)."""
        import torch

        from portability.serving.step_profile import profile_steps

        ids = torch.tensor(spec["prompts"][: spec["max_num_seqs"]], device=spec["device"])
        state: dict[str, Any] = {}

        def prefill() -> None:
            out = model(input_ids=ids, use_cache=True)
            state.update(cache=out.past_key_values, next=out.logits[:, -1:].argmax(-1))

        def decode() -> None:
            out = model(input_ids=state["next"], past_key_values=state["cache"], use_cache=True)
            state.update(cache=out.past_key_values, next=out.logits[:, -1:].argmax(-1))

        with torch.inference_mode():
            prefill()  # the decode step's cache
            result = profile_steps({"prefill": prefill, "decode": decode}, spec["device"])
        if spec["backend"] == "flaggems":
            result["flaggems_functions"] = flaggems_hook.enabled_by_aten()
        return result

    def logprobs(self, spec: dict[str, Any]) -> dict[str, Any]:
        import torch

        from portability.serving.gate import dense_to_positions

        model = self._model(spec)
        with torch.inference_mode():
            logits = model(torch.tensor(spec["prompts"], device=spec["device"])).logits
            lp = torch.log_softmax(logits[:, :-1].float(), dim=-1).cpu()
        return {"logprobs": dense_to_positions(lp, spec["top_k"], spec["prompts"])}
