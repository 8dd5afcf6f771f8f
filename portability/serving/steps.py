"""The steps of one serving cell, each run in worker processes: throughput, online latency, accuracy gate.

`step_throughput` runs the offline benchmark and records the tok/s ratio to the torch backend of the same
engine, mode and device; `step_online` starts the engine's OpenAI server and drives vLLM's serving benchmark
against it; `step_gate` compares the cell's teacher-forced prompt logprobs with the reference (computed once
per device by `gate_reference`) and `step_bisect` names the FlagGems operators behind a failed flaggems cell.
Each step writes its figures into the cell's result row and raises `RunFailed` when its run fails.
"""

from __future__ import annotations

import shutil
import sys
from typing import Any

from portability.serving.gate import compare_logprobs, verdict
from portability.serving.procs import RunFailed, free_port, openai_server, run_worker

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


def say(text: str) -> None:
    sys.stderr.write(f"== serving {text}\n")
    sys.stderr.flush()


def step_throughput(ctx, engine, backend, device, env, log, row, native, mode: str = "") -> None:
    s = ctx.s
    say(
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
    say(
        f"{engine} {backend}@{device}: {t['output_tok_s']:.1f} output tok/s, start-up {t['startup_s']:.1f}s,"
        f" warm-up {t['warmup_s']:.1f}s"
    )


def step_online(ctx, engine, backend, device, env, log, row) -> None:
    s = ctx.s
    port = free_port()
    spec = ctx.spec(engine.name, backend, device, "online", base_url=f"http://127.0.0.1:{port}")
    say(
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
    say(
        f"{engine.name} {backend}@{device}: TTFT p50 {o['ttft_ms_p50']:.1f} ms,"
        f" TPOT p50 {o['tpot_ms_p50']:.1f} ms,"
        f" server start-up {up:.1f}s"
    )


def gate_reference(ctx, device, references) -> dict[str, Any]:
    if device not in references:
        say(f"reference: hf engine, torch backend, float32 on {device}, same weights")
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


def step_gate(ctx, engine, backend, device, log, row, references) -> None:
    s = ctx.s
    from portability.serving.engines.hf import HFEngine

    if not HFEngine().probe("torch", device).available:
        raise RunFailed("infra", "no gate reference: " + HFEngine().probe("torch", device).reason)
    ref = gate_reference(ctx, device, references)
    say(
        f"{engine.name} {backend}@{device}: accuracy gate"
        f" ({s.gate.prompts}x{s.gate.prompt_len} tokens, top-{ctx.top_k})"
    )
    env = ctx.env(engine, backend)
    record = None
    recordable = backend == "flaggems" and s.bisect and not s.bisect_ops and not _flaggems_lacks("call_log")
    if recordable:  # the bisection's universe, for free
        record = ctx.logs / f"flaggems-calls.{engine.name}.{device.replace(':', '_')}"
        shutil.rmtree(record, ignore_errors=True)
        env = {**env, "PORTABILITY_FLAGGEMS_RECORD": str(record)}
    got = run_worker(ctx.spec(engine.name, backend, device, "logprobs"), env, s.timeout_s, log)
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
    say(
        f"{engine.name} {backend}@{device}: gate {result}:"
        f" max |Δlogprob| {metrics['max_abs_logprob_diff']:.3g},"
        f" mean KL {metrics['mean_kl']:.3g}, greedy agreement {metrics['greedy_agreement']:.0%}"
    )
    if result == "fail" and backend == "flaggems" and s.bisect:
        from portability.serving.engines.flaggems_hook import called_functions

        called = called_functions(record) if record is not None and record.is_dir() else []
        step_bisect(ctx, engine, device, log, row, ref, called)  # the gate failed


def _flaggems_lacks(feature: str) -> str | None:
    """Why the importable FlagGems cannot do `feature` (probed on its source: this process never imports
    flag_gems), or None."""
    from portability.flaggems.features import of_source
    from portability.flaggems.package import FlagGemsUnavailable

    try:
        return of_source().missing(feature)
    except FlagGemsUnavailable as exc:
        return str(exc)


def _dispatched_universe(ctx, engine, device, log) -> tuple[list[str], str]:
    """The FlagGems functions registered for the aten operators the engine's model dispatches to (every
    FlagGems function where the engine cannot tell), and how to say so."""
    s = ctx.s
    probe = ctx.spec(engine.name, "torch", device, "dispatched_ops")
    dispatched = run_worker(probe, ctx.env(engine, "torch"), s.timeout_s, log).get("dispatched")
    universe = {"mode": "flaggems_ops", "engine": engine.name, "dispatched": dispatched}
    ops = list(run_worker(universe, {}, s.timeout_s, log)["ops"])
    if engine.name == "vllm-fl":
        from portability.serving.engines.vllm_fl import OOT_OPS

        ops = list(dict.fromkeys([*OOT_OPS, *ops]))
    ops = [op for op in ops if op not in s.flaggems_exclude]  # left off in the cell: not suspects
    return ops, "operators the model dispatches to" if dispatched is not None else "operators"


def step_bisect(
    ctx, engine, device, log, row, ref: dict[str, Any] | None, called: list[str] | None = None
) -> None:
    """Name the FlagGems operators behind a failed flaggems cell. With `ref`, the gate failed and a
    subset is guilty when the gate fails with FlagGems on for it alone; without, the engine crashed or
    raised in its throughput run, and a subset is guilty when a short run of the same batch does too.
    The search runs over `bisect_ops` if set, else over the FlagGems functions the failed gate run
    `called` (FlagGems' call log), else over those registered for what the model dispatches to."""
    from portability.serving.bisect import find_culprits

    s = ctx.s
    lacks = _flaggems_lacks("only_enable")
    if lacks:  # every subset run would fail for that reason, not for a culprit
        row["bisect"] = {"runs": 0, "complete": False, "ops": 0, "unavailable": lacks}
        row["reason"] = f"{row['reason']}; no bisection: {lacks}"
        say(f"{engine.name} flaggems@{device}: no bisection: {lacks}")
        return
    ops: list[str] = []
    recorded = False
    if s.bisect_ops:
        ops, what = list(s.bisect_ops), "functions named in bisect_ops"
    elif called:
        universe = {"mode": "flaggems_ops", "engine": engine.name, "called": called}
        ops = [o for o in run_worker(universe, {}, s.timeout_s, log)["ops"] if o not in s.flaggems_exclude]
        what, recorded = "functions the failed gate run called", bool(ops)
    if not ops:
        ops, what = _dispatched_universe(ctx, engine, device, log)
    say(
        f"{engine.name} flaggems@{device}: bisecting {len(ops)} FlagGems {what}"
        f" (at most {s.bisect_max_runs} runs, {s.bisect_budget_s:.0f}s)"
    )

    def fails(subset: list[str]) -> bool:
        env = ctx.env(engine, "flaggems", include=subset)
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
        say(f"  bisect: {len(subset)} ops -> {'fail' if failed else 'pass'}")
        return failed

    checks = 0  # the search assumes its whole set fails: a named or recorded set must show it
    if s.bisect_ops:
        checks += 1
        if not fails(ops):
            row["bisect"] = {"runs": 1, "complete": True, "ops": len(ops)}
            named = ", ".join(ops)
            row["reason"] += f"; FlagGems on for bisect_ops alone ({named}) passes: culprits are elsewhere"
            say(f"{engine.name} flaggems@{device}: bisect_ops alone pass, culprits are elsewhere")
            return
    elif recorded:
        checks += 1
        if not fails(ops):  # a culprit among the FlagGems functions that never log a call
            ops, what = _dispatched_universe(ctx, engine, device, log)
            say(f"  the called functions alone pass: bisecting {len(ops)} FlagGems {what} instead")
    result = find_culprits(ops, fails, s.bisect_max_runs - checks, s.bisect_budget_s)
    row["culprits"] = result.culprits
    runs = result.runs + checks
    row["bisect"] = {"runs": runs, "complete": result.complete, "ops": len(ops), "universe": what}
    suffix = "" if result.complete else f" (run/time budget spent: {len(result.culprits)} suspects left)"
    row["reason"] = f"{row['reason']}; culprits: {', '.join(result.culprits)}{suffix}"
    say(f"{engine.name} flaggems@{device}: culprits {result.culprits}{suffix}")
