"""Run the serving cells: engine × backend × device, every engine run in its own subprocess.

Per cell, after `probe()` of the backend on the device and of the engine (unavailable, with the reason,
never a failure): offline throughput (dummy weights by default), online latency through the engine's
OpenAI server driven by vLLM's own serving benchmark, then the accuracy gate: teacher-forced prompt
log-probabilities on the seeded synthetic checkpoint, compared position by position with the reference
(the `hf` engine, backend torch, float32, same weights, same device): max |Δ logprob| of the actual next
tokens and mean KL gate the cell, greedy-token agreement is reported. A flaggems cell that fails the
gate is bisected over FlagGems' operators to name the culprits. Torch cells run first, so every other
backend's tok/s can be given as a ratio to the torch backend of the same engine and device.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from portability.results import ResultWriter, read_results
from portability.serving import model_config_dir
from portability.serving.checkpoint import synthetic_checkpoint
from portability.serving.gate import compare_logprobs, resolve_top_k, verdict
from portability.serving.procs import RunFailed, free_port, openai_server, run_worker
from portability.serving.prompts import text_prompts, token_prompts
from portability.serving.settings import ServingSettings

REFERENCE = "hf torch float32"
METRIC_FIELDS = (
    "startup_s",
    "warmup_s",
    "output_tok_s",
    "total_tok_s",
    "requests_s",
    "server_startup_s",
    "ttft_ms_p50",
    "ttft_ms_p99",
    "tpot_ms_p50",
    "tpot_ms_p99",
    "itl_ms_p50",
    "itl_ms_p99",
    "failed_requests",
    "ratio_vs_native",
)


# Errors that say FlagGems (or vllm-plugin-FL) never came on: every subset would fail the same way, so
# bisecting them would name a wrong culprit. Phrases of the engines' own messages (the worker's error text
# is all that crosses the process boundary).
SET_UP_FAILURES = ("FlagGems was not switched on", "vllm-plugin-FL did not activate")


def _say(text: str) -> None:
    sys.stderr.write(f"== serving {text}\n")
    sys.stderr.flush()


def _probe_backend(backend: str, device: str) -> tuple[bool, str, str]:
    """(available, reason, device name) of the backend's adapter on the device."""
    try:
        from portability.registry import adapter_class

        a = adapter_class(backend)(device).probe()
    except Exception as exc:
        return False, f"backend '{backend}' could not be probed: {type(exc).__name__}: {exc}", ""
    return a.available, a.reason, a.device_name


class _Cell:
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
            "enforce_eager": s.enforce_eager,
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


class ServingStopped(Exception):
    """SIGTERM (a time limit such as `timeout`, a CI job cancelled) arrived while serving."""


def _raise_stopped(signum: int, frame: Any) -> None:
    raise ServingStopped(signal.Signals(signum).name)


def run_serving(
    cells: list[tuple[str, ...]], settings: ServingSettings, out_dir: Path, writer: ResultWriter
) -> None:
    """cells: (engine, backend, device) — extra items (cell status, reason) from a plan are honoured.
    One row per cell is appended to `writer` as each finishes. On SIGTERM the cell being served gets a
    row with what it measured so far (and its worker processes are stopped), then ServingStopped is
    raised: the caller still writes the scorecard."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_stopped) if in_main else None
    try:
        _run_cells(cells, settings, out_dir, writer)
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous)


def _run_cells(
    cells: list[tuple[str, ...]], settings: ServingSettings, out_dir: Path, writer: ResultWriter
) -> None:
    from portability.serving.engines import ENGINES, get_engine

    out_dir = Path(out_dir)
    ctx: _Cell | None = None
    setup_error = ""
    references: dict[str, dict[str, Any] | RunFailed] = {}
    native: dict[tuple[str, str], float] = {}
    probes: dict[tuple[str, str], tuple[bool, str, str]] = {}
    # A resumed run (`portability run --resume`) keeps the serving rows it already has: those cells are
    # not served again, and their torch tok/s stay the native baseline of the ratios.
    served = {
        r["id"]: r for r in read_results(writer.path) if r.get("kind") == "serving" and not r.get("stopped")
    }
    for r in served.values():
        if r.get("backend") == "torch" and r.get("output_tok_s"):
            mode = "+graphs" if r.get("cuda_graphs") else ""
            native[(f"{r['engine']}{mode}", r["device"])] = r["output_tok_s"]
    order = sorted(cells, key=lambda c: (c[0], c[2], c[1] != "torch"))
    for cell in order:
        engine_name, backend, device = cell[0], cell[1], cell[2]
        # CUDA graphs on and off are different serving modes of the same cell: separate rows (and ids),
        # so both can sit in one merged scorecard.
        on_cpu = device.split(":")[0] == "cpu"
        graphs = engine_name.startswith("vllm") and not on_cpu and not settings.enforce_eager
        mode = "+graphs" if graphs else ""
        row: dict[str, Any] = {
            "id": f"serving:{engine_name}{mode}:{backend}@{device}:{settings.model_name}",
            "kind": "serving",
            "cuda_graphs": graphs,
            "cell": f"{backend}@{device}",
            "backend": backend,
            "device": device,
            "engine": engine_name,
            "model": settings.model_name,
            "weights": settings.weights_label,
            "reason": None,
            "gate": None,
            "culprits": [],
            "time": time.time(),
            **dict.fromkeys(METRIC_FIELDS),
        }
        if row["id"] in served:
            kept = served[row["id"]]["status"]
            _say(f"{engine_name}{mode} {backend}@{device}: kept from the earlier run ({kept})")
            continue
        t_cell = time.perf_counter()
        if len(cell) >= 5 and cell[3] != "available":
            writer.append({**row, "status": "unavailable", "reason": cell[4]})
            continue
        if engine_name not in ENGINES:
            writer.append({**row, "status": "error", "reason": f"unknown serving engine '{engine_name}'"})
            continue
        engine = get_engine(engine_name)
        row["versions"] = engine.versions()
        if (backend, device) not in probes:
            probes[(backend, device)] = _probe_backend(backend, device)
        ok, reason, device_name = probes[(backend, device)]
        row["device_name"] = device_name
        if ok:
            avail = engine.probe(backend, device)
            ok, reason = avail.available, avail.reason
        if not ok:
            _say(f"{engine_name} {backend}@{device}: unavailable: {reason}")
            writer.append({**row, "status": "unavailable", "reason": reason})
            continue
        if ctx is None and not setup_error:
            try:
                ctx = _Cell(settings, out_dir)
            except Exception as exc:
                setup_error = f"serving setup failed: {type(exc).__name__}: {exc}"
        if ctx is None:
            writer.append({**row, "status": "error", "reason": setup_error})
            continue
        if engine_name == "hf" and not settings.real_weights:
            row["weights"] = "synthetic"
        try:
            _serve_cell(ctx, engine, backend, device, mode, row, native, references)
        except ServingStopped as exc:
            # What was measured so far is kept; the row is marked so that --resume serves the cell again.
            row.update(
                status="timeout",
                stopped=True,
                reason=f"stopped by {exc} (the run's time limit) while serving; figures measured before "
                "are kept, `portability run --resume` serves this cell again",
                cell_s=time.perf_counter() - t_cell,
            )
            writer.append(row)
            raise
        row["cell_s"] = time.perf_counter() - t_cell
        _say(
            f"{engine_name} {backend}@{device}: {row['status']}"
            + (f" ({row['reason']})" if row["reason"] else "")
        )
        writer.append(row)


def _serve_cell(ctx, engine, backend, device, mode, row, native, references) -> None:
    """Throughput, online latency and the gate of one cell, into `row`; a failed flaggems cell is bisected."""
    settings, engine_name = ctx.s, engine.name
    log = ctx.logs / f"serving.{engine_name}.{backend}@{device.replace(':', '_')}.log"
    env = engine.env(backend)
    try:
        _step_throughput(ctx, engine_name, backend, device, env, log, row, native, mode)
        online_failed = None
        if settings.online and engine.serves_openai:
            try:
                _step_online(ctx, engine, backend, device, env, log, row)
            except RunFailed as exc:  # the gate still runs: its verdict is not lost to a server failure
                online_failed = exc
        _step_gate(ctx, engine, backend, device, log, row, references)
        if online_failed is not None:
            gate_reason = f"; {row['reason']}" if row["reason"] else ""
            why = f"online: {online_failed}"[-1500:] + gate_reason
            row.update(status=online_failed.status, reason=why)
    except RunFailed as exc:
        row.update(status=exc.status, reason=str(exc)[-2000:])
        set_up = any(phrase in str(exc) for phrase in SET_UP_FAILURES)
        if backend == "flaggems" and settings.bisect and exc.status in ("error", "crash") and not set_up:
            try:
                _step_bisect(ctx, engine, device, log, row, None)  # the engine crashed or raised
            except RunFailed as again:
                row["reason"] += f"; bisection could not run: {again}"


def _step_throughput(ctx, engine, backend, device, env, log, row, native, mode: str = "") -> None:
    s = ctx.s
    _say(
        f"{engine} {backend}@{device} {s.model_name}: throughput"
        f" ({s.num_prompts} prompts, {s.input_len}+{s.output_len} tokens)"
    )
    spec = ctx.spec(engine, backend, device, "throughput")
    t = run_worker(spec, env, s.timeout_s, log)
    row.update({k: t.get(k) for k in ("startup_s", "warmup_s", "output_tok_s", "total_tok_s", "requests_s")})
    row["dtype"] = spec["dtype"]
    key = (f"{engine}{mode}", device)  # the native baseline: torch, same engine, mode and device
    if backend == "torch":
        native[key] = t["output_tok_s"]
    if native.get(key):
        row["ratio_vs_native"] = t["output_tok_s"] / native[key]
    _say(
        f"{engine} {backend}@{device}: {t['output_tok_s']:.1f} output tok/s, start-up {t['startup_s']:.1f}s,"
        f" warm-up {t['warmup_s']:.1f}s"
    )


def _step_online(ctx, engine, backend, device, env, log, row) -> None:
    s = ctx.s
    port = free_port()
    spec = ctx.spec(engine.name, backend, device, "online", base_url=f"http://127.0.0.1:{port}")
    _say(
        f"{engine.name} {backend}@{device}: OpenAI server on 127.0.0.1:{port},"
        f" {s.concurrency} concurrent requests"
    )
    server_log = log.with_suffix(".server.log")
    with openai_server(
        engine.server_command(spec, port), env, port, s.server_start_timeout_s, server_log
    ) as up:
        row["server_startup_s"] = up
        o = run_worker(spec, {}, s.timeout_s, log)
    row.update({k: o.get(k) for k in METRIC_FIELDS if k in o})
    row["online_output_tok_s"] = o.get("online_output_tok_s")
    if o.get("failed_requests"):
        raise RunFailed("error", f"{o['failed_requests']} of {len(spec['prompts'])} online requests failed")
    _say(
        f"{engine.name} {backend}@{device}: TTFT p50 {o['ttft_ms_p50']:.1f} ms,"
        f" TPOT p50 {o['tpot_ms_p50']:.1f} ms,"
        f" server start-up {up:.1f}s"
    )


def _reference(ctx, device, references) -> dict[str, Any]:
    if device not in references:
        _say(f"reference: hf engine, torch backend, float32 on {device}, same weights")
        spec = ctx.spec("hf", "torch", device, "logprobs", dtype="float32")
        try:
            references[device] = run_worker(
                spec, {}, ctx.s.timeout_s, ctx.logs / f"serving.reference.{device}.log"
            )
        except RunFailed as exc:
            references[device] = exc
    ref = references[device]
    if isinstance(ref, RunFailed):
        raise RunFailed("infra", f"no reference logprobs ({REFERENCE}): {ref}")
    return ref


def _step_gate(ctx, engine, backend, device, log, row, references) -> None:
    s = ctx.s
    from portability.serving.engines.hf import HFEngine

    if not HFEngine().probe("torch", device).available:
        raise RunFailed("infra", "no gate reference: " + HFEngine().probe("torch", device).reason)
    ref = _reference(ctx, device, references)
    _say(
        f"{engine.name} {backend}@{device}: accuracy gate"
        f" ({s.gate.prompts}x{s.gate.prompt_len} tokens, top-{ctx.top_k})"
    )
    got = run_worker(
        ctx.spec(engine.name, backend, device, "logprobs"), engine.env(backend), s.timeout_s, log
    )
    metrics = compare_logprobs(ref["logprobs"], got["logprobs"], ctx.gate_prompts)
    result, why = verdict(metrics, s.gate.max_abs_logprob_diff, s.gate.mean_kl)
    row["gate"] = {
        "verdict": result,
        **metrics,
        "reference": f"{REFERENCE} on {device}",
        "dtype": s.gate.dtype,
        "top_k": ctx.top_k,
    }
    row.update(status="pass" if result == "pass" else "fail", reason=why or None)
    _say(
        f"{engine.name} {backend}@{device}: gate {result}:"
        f" max |Δlogprob| {metrics['max_abs_logprob_diff']:.3g},"
        f" mean KL {metrics['mean_kl']:.3g}, greedy agreement {metrics['greedy_agreement']:.0%}"
    )
    if result == "fail" and backend == "flaggems" and s.bisect:
        _step_bisect(ctx, engine, device, log, row, ref)  # the gate failed


def _step_bisect(ctx, engine, device, log, row, ref: dict[str, Any] | None) -> None:
    """Name the FlagGems operators behind a failed flaggems cell. With `ref`, the gate failed and a
    subset is guilty when the gate fails with FlagGems on for it alone; without, the engine crashed or
    raised in its throughput run, and a subset is guilty when a short run of the same batch does too."""
    from portability.serving.bisect import find_culprits

    s = ctx.s
    if s.bisect_ops:
        ops, what = list(s.bisect_ops), "functions named in bisect_ops"
    else:
        probe = ctx.spec(engine.name, "torch", device, "dispatched_ops")
        dispatched = run_worker(probe, engine.env("torch"), s.timeout_s, log).get("dispatched")
        universe = {"mode": "flaggems_ops", "engine": engine.name, "dispatched": dispatched}
        ops = list(run_worker(universe, {}, s.timeout_s, log)["ops"])
        if engine.name == "vllm-fl":
            from portability.serving.engines.vllm_fl import OOT_OPS

            ops = list(dict.fromkeys([*OOT_OPS, *ops]))
        what = "operators the model dispatches to" if dispatched is not None else "operators"
    _say(
        f"{engine.name} flaggems@{device}: bisecting {len(ops)} FlagGems {what}"
        f" (at most {s.bisect_max_runs} runs, {s.bisect_budget_s:.0f}s)"
    )

    def fails(subset: list[str]) -> bool:
        env = engine.env("flaggems", include=subset)
        if ref is None:  # reproduce the crash on the same batch, two output tokens
            spec = ctx.spec(engine.name, "flaggems", device, "throughput", output_len=2)
        else:
            spec = ctx.spec(engine.name, "flaggems", device, "logprobs")
        try:
            got = run_worker(spec, env, s.timeout_s, log)
        except RunFailed as exc:
            failed = exc.status != "timeout"  # a subset that crashes the engine is guilty
        else:
            failed = ref is not None and (
                verdict(
                    compare_logprobs(ref["logprobs"], got["logprobs"], ctx.gate_prompts),
                    s.gate.max_abs_logprob_diff,
                    s.gate.mean_kl,
                )[0]
                == "fail"
            )
        _say(f"  bisect: {len(subset)} ops -> {'fail' if failed else 'pass'}")
        return failed

    if s.bisect_ops and not fails(ops):  # the search assumes its whole set fails: a named set must show it
        row["bisect"] = {"runs": 1, "complete": True, "ops": len(ops)}
        named = ", ".join(ops)
        row["reason"] += f"; FlagGems on for bisect_ops alone ({named}) passes: culprits are elsewhere"
        _say(f"{engine.name} flaggems@{device}: bisect_ops alone pass, culprits are elsewhere")
        return
    result = find_culprits(ops, fails, s.bisect_max_runs, s.bisect_budget_s)
    row["culprits"] = result.culprits
    runs = result.runs + (1 if s.bisect_ops else 0)  # the check that the named set fails
    row["bisect"] = {"runs": runs, "complete": result.complete, "ops": len(ops)}
    suffix = "" if result.complete else f" (run/time budget spent: {len(result.culprits)} suspects left)"
    row["reason"] = f"{row['reason']}; culprits: {', '.join(result.culprits)}{suffix}"
    _say(f"{engine.name} flaggems@{device}: culprits {result.culprits}{suffix}")
