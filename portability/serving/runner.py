"""Run the serving cells: each engine × backend × device, every run in its own subprocess.

Per cell: offline throughput on dummy weights (start-up and warm-up kept out of the timed batch), then
teacher-forced prompt log-probabilities on the synthetic checkpoint, compared position by position with
the reference (transformers' Qwen3 in float32 on the CPU, same weights): max |Δ logprob| of the prompt
tokens and mean KL divergence gate the cell; greedy-token agreement is reported beside them.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from portability.results import ResultWriter
from portability.serving import model_config_dir
from portability.serving.checkpoint import synthetic_checkpoint
from portability.serving.settings import ServingSettings


class RunFailed(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _run_worker(spec: dict[str, Any], timeout: float, log: Path) -> dict[str, Any]:
    """Start the worker in a new process group; kill the whole group on timeout. Never leaves one behind."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
        spec_file.write_text(json.dumps(spec))
        env = {**os.environ, "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "portability.serving.worker", str(spec_file), str(result_file)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise RunFailed("timeout", f"{spec['mode']} run gave no result in {timeout:.0f}s") from None
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
        if not result_file.exists():
            tail = log.read_text(errors="replace").strip().splitlines()[-6:]
            status = "crash" if code is not None and code < 0 else "error"
            raise RunFailed(status, f"{spec['mode']} run exited with {code}: " + " | ".join(tail))
        return json.loads(result_file.read_text())


def compare_logprobs(ref: list, got: list, prompts_tokens: list[list[int]]) -> dict[str, float]:
    """max |Δ logprob| of the actual next tokens, mean KL(ref ‖ got) per position, greedy agreement."""
    r, g = torch.tensor(ref, dtype=torch.float64), torch.tensor(got, dtype=torch.float64)
    targets = torch.tensor(prompts_tokens)[:, 1:].unsqueeze(-1)
    diff = (r.gather(-1, targets) - g.gather(-1, targets)).abs()
    p = r.exp()
    kl = (p * (r - g.clamp(min=-1e4))).sum(-1)
    return {
        "max_abs_logprob_diff": float(diff.max()),
        "mean_kl": float(kl.mean()),
        "greedy_agreement": float((r.argmax(-1) == g.argmax(-1)).double().mean()),
    }


def _base_spec(
    settings: ServingSettings, engine: str, backend: str, device: str, model_dir: Path, config: dict[str, Any]
) -> dict[str, Any]:
    return {
        "engine": engine,
        "backend": backend,
        "device": device,
        "model_dir": str(model_dir),
        "vocab": config["vocab_size"],
        "seed": settings.seed,
        "input_len": settings.input_len,
        "output_len": settings.output_len,
        "num_prompts": settings.num_prompts,
        "max_num_seqs": settings.max_num_seqs,
        "kv_cache_memory_bytes": settings.kv_cache_memory_bytes,
        "enforce_eager": settings.enforce_eager,
        "max_model_len": settings.input_len + settings.output_len,
        "dtype": "float32" if device == "cpu" else "bfloat16",
        "gate_prompts": settings.gate.prompts,
        "gate_prompt_len": settings.gate.prompt_len,
    }


def run_serving(
    cells: list[tuple[str, str, str, str, str]], settings: ServingSettings, out: Path, writer: ResultWriter
) -> None:
    """cells: (engine, backend, device, cell status, reason). One row per cell, as each finishes."""
    from portability.serving.worker import prompts

    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config_dir = model_config_dir(settings.model)
    config = json.loads((config_dir / "config.json").read_text())
    reference: dict[str, Any] | None = None
    reference_error = ""
    native: dict[tuple[str, str], float] = {}
    for engine, backend, device, cell_status, cell_reason in sorted(cells, key=lambda c: c[1] != "torch"):
        row: dict[str, Any] = {
            "id": f"serving:{engine}:{backend}@{device}:{settings.model}",
            "kind": "serving",
            "cell": f"{backend}@{device}",
            "backend": backend,
            "device": device,
            "engine": engine,
            "model": settings.model,
            "weights": "dummy + synthetic",
            "time": time.time(),
        }
        if cell_status != "available":
            writer.append({**row, "status": "unavailable", "reason": cell_reason})
            continue
        if importlib.util.find_spec("vllm") is None:
            writer.append({**row, "status": "unavailable", "reason": "vllm is not installed"})
            continue
        spec = _base_spec(settings, engine, backend, device, config_dir, config)
        log = logs / f"serving.{engine}.{backend}@{device}.log"
        sys.stderr.write(f"== serving {engine} {backend}@{device} {settings.model}: throughput\n")
        try:
            tput = _run_worker({**spec, "mode": "throughput"}, settings.timeout_s, log)
            row.update(
                {k: tput[k] for k in ("startup_s", "warmup_s", "output_tok_s", "total_tok_s", "requests_s")}
            )
            if backend == "torch":
                native[(engine, device)] = tput["output_tok_s"]
            if (engine, device) in native:
                row["ratio_vs_native"] = tput["output_tok_s"] / native[(engine, device)]
            ckpt = synthetic_checkpoint(settings.model, settings.seed)
            if reference is None and not reference_error:
                sys.stderr.write("== serving reference: transformers float32 on the CPU, synthetic weights\n")
                try:
                    reference = _run_worker(
                        {**spec, "engine": "hf", "device": "cpu", "mode": "logprobs", "model_dir": str(ckpt)},
                        settings.timeout_s,
                        logs / "serving.reference.log",
                    )
                except RunFailed as exc:
                    reference_error = str(exc)
            sys.stderr.write(f"== serving {engine} {backend}@{device}: accuracy gate\n")
            got = _run_worker({**spec, "mode": "logprobs", "model_dir": str(ckpt)}, settings.timeout_s, log)
            if reference is None:
                row.update(status="infra", reason=f"no reference logprobs: {reference_error}")
            else:
                toks = prompts(
                    settings.gate.prompts, settings.gate.prompt_len, config["vocab_size"], settings.seed + 1
                )
                gate = compare_logprobs(reference["logprobs"], got["logprobs"], toks)
                ok = (
                    gate["max_abs_logprob_diff"] <= settings.gate.max_abs_logprob_diff
                    and gate["mean_kl"] <= settings.gate.mean_kl
                    and math.isfinite(gate["mean_kl"])
                )
                gate.update(verdict="pass" if ok else "fail", reference="transformers float32 CPU")
                row.update(
                    gate=gate,
                    status="pass" if ok else "fail",
                    reason=None
                    if ok
                    else f"gate failed: max |Δlogprob| {gate['max_abs_logprob_diff']:.3g}"
                    f" (limit {settings.gate.max_abs_logprob_diff:g}), mean KL {gate['mean_kl']:.3g}"
                    f" (limit {settings.gate.mean_kl:g})",
                )
        except RunFailed as exc:
            row.update(status=exc.status, reason=str(exc)[-1500:])
        writer.append(row)


def render_serving_table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    from portability.scorecard import md_text

    def num(value: Any, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, (int, float)) else ""

    table = []
    for r in sorted(rows, key=lambda r: r["id"]):
        gate = r.get("gate") or {}
        table.append(
            [
                md_text(r.get("engine"), 20),
                md_text(r["cell"], 40),
                md_text(r.get("model"), 30),
                md_text(r.get("weights"), 30),
                num(r.get("output_tok_s"), ".1f"),
                num(r.get("startup_s"), ".0f"),
                num(r.get("ratio_vs_native"), ".2f") + ("x" if r.get("ratio_vs_native") else ""),
                gate.get("verdict") or r["status"],
                num(gate.get("max_abs_logprob_diff"), ".2e"),
                num(gate.get("mean_kl"), ".2e"),
                num(gate.get("greedy_agreement"), ".0%"),
                md_text(r.get("reason") or "", 160),
            ]
        )
    return tabulate(
        table,
        headers=[
            "engine",
            "cell",
            "model",
            "weights",
            "output tok/s",
            "start-up s",
            "vs native",
            "gate",
            "max abs Δlogprob",
            "mean KL",
            "greedy agree",
            "reason",
        ],
        tablefmt="github",
        disable_numparse=True,
    )
