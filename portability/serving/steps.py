"""The steps of one serving cell, each run in worker processes: throughput, online latency, accuracy gate.

`step_throughput` runs the offline benchmark and records the tok/s ratio to the torch backend of the same
engine, mode, device and tensor-parallel size; `step_online` starts the engine's OpenAI server and drives
vLLM's serving benchmark against it; `step_gate` compares the cell's teacher-forced prompt logprobs with the
reference (computed once per device by `gate_reference`) and `step_bisect` names the FlagGems operators
behind a failed flaggems cell; `step_profile` profiles a prefill and a decode step and attributes a flaggems
cell's gap to the torch cell to operators; `throughput_gate` judges the tok/s ratio. Each step writes its
figures into the cell's result row (`ServingCell.row`) and raises `RunFailed` when its run fails.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from portability.serving.cell import RunState, ServingCell
from portability.serving.gate import compare_logprobs, verdict
from portability.serving.procs import RunFailed, free_port, openai_server, run_worker
from portability.serving.step_profile import attribute_gap, main_share

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


def step_throughput(cell: ServingCell, state: RunState) -> None:
    s = cell.ctx.s
    shape = f"{s.num_prompts} prompts, {s.input_len}+{s.output_len} tokens"
    say(f"{cell.name} {s.model_name}: throughput ({shape})")
    # engines that profile steps do it in the throughput run, after the timed batch (one start-up)
    spec = cell.spec("throughput", profile=s.profile and cell.engine.profiles_steps)
    t = run_worker(spec, cell.env(), s.timeout_s, cell.log)
    row = cell.row
    if t.get("profile"):
        row["profile"] = t["profile"]
    row.update({k: t.get(k) for k in ("startup_s", "warmup_s", "output_tok_s", "total_tok_s", "requests_s")})
    row["dtype"] = spec["dtype"]
    key = cell.baseline_key  # the native baseline: torch, same engine, mode, device and TP size
    if cell.backend == "torch":
        state.native_tok_s[key] = t["output_tok_s"]
    if state.native_tok_s.get(key):
        row["ratio_vs_native"] = t["output_tok_s"] / state.native_tok_s[key]
    say(
        f"{cell.name}: {t['output_tok_s']:.1f} output tok/s, start-up {t['startup_s']:.1f}s,"
        f" warm-up {t['warmup_s']:.1f}s"
    )


def step_online(cell: ServingCell) -> None:
    s = cell.ctx.s
    port = free_port()
    spec = cell.spec("online", base_url=f"http://127.0.0.1:{port}")
    say(f"{cell.name}: OpenAI server on 127.0.0.1:{port}, {s.concurrency} concurrent requests")
    server_log = cell.log.with_suffix(".server.log")
    command = cell.engine.server_command(spec, port)
    with openai_server(command, cell.env(), port, s.server_start_timeout_s, server_log) as up:
        cell.row["server_startup_s"] = up
        o = run_worker(spec, {}, s.timeout_s, cell.log)
    cell.row.update({k: o.get(k) for k in METRIC_FIELDS if k in o})
    cell.row["online_output_tok_s"] = o.get("online_output_tok_s")
    if o.get("failed_requests"):
        raise RunFailed("error", f"{o['failed_requests']} of {len(spec['prompts'])} online requests failed")
    say(
        f"{cell.name}: TTFT p50 {o['ttft_ms_p50']:.1f} ms, TPOT p50 {o['tpot_ms_p50']:.1f} ms,"
        f" server start-up {up:.1f}s"
    )


def gate_reference(ctx, device: str, references: dict[str, Any]) -> dict[str, Any]:
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


def _call_log_dir(cell: ServingCell) -> Path:
    tp = f".tp{cell.tensor_parallel_size}" if cell.tensor_parallel_size > 1 else ""
    return cell.ctx.logs / f"flaggems-calls.{cell.engine.name}.{cell.device.replace(':', '_')}{tp}"


def step_gate(cell: ServingCell, state: RunState) -> None:
    s, row = cell.ctx.s, cell.row
    from portability.serving.engines.hf import HFEngine

    if not HFEngine().probe("torch", cell.device).available:
        raise RunFailed("infra", "no gate reference: " + HFEngine().probe("torch", cell.device).reason)
    ref = gate_reference(cell.ctx, cell.device, state.references)
    say(f"{cell.name}: accuracy gate ({s.gate.prompts}x{s.gate.prompt_len} tokens, top-{cell.ctx.top_k})")
    env = cell.env()
    record = None
    recordable = cell.backend == "flaggems" and not s.bisect_ops and not _flaggems_lacks("call_log")
    if recordable:  # the bisection's universe and the profile's names
        record = _call_log_dir(cell)
        shutil.rmtree(record, ignore_errors=True)
        env = {**env, "PORTABILITY_FLAGGEMS_RECORD": str(record)}
    got = run_worker(cell.spec("logprobs"), env, s.timeout_s, cell.log)
    metrics = compare_logprobs(ref["logprobs"], got["logprobs"], cell.ctx.gate_prompts)
    result, why = verdict(metrics, s.gate.max_abs_logprob_diff, s.gate.mean_kl)
    row["gate"] = {
        "verdict": result,
        **metrics,
        "reference": f"{REFERENCE} on {cell.device}",
        "dtype": s.gate.dtype,
        "top_k": cell.ctx.top_k,
    }
    row.update(status="pass" if result == "pass" else "fail", reason=why or None)
    say(
        f"{cell.name}: gate {result}: max |Δlogprob| {metrics['max_abs_logprob_diff']:.3g},"
        f" mean KL {metrics['mean_kl']:.3g}, greedy agreement {metrics['greedy_agreement']:.0%}"
    )
    if result == "fail" and cell.backend == "flaggems" and s.bisect:
        from portability.serving.engines.flaggems_hook import called_functions

        called = called_functions(record) if record is not None and record.is_dir() else []
        step_bisect(cell, ref, called)  # the gate failed


def _flaggems_lacks(feature: str) -> str | None:
    """Why the importable FlagGems cannot do `feature` (probed on its source: this process never imports
    flag_gems), or None."""
    from portability.flaggems.features import of_source
    from portability.flaggems.package import FlagGemsUnavailable

    try:
        return of_source().missing(feature)
    except FlagGemsUnavailable as exc:
        return str(exc)


def step_profile(cell: ServingCell, state: RunState) -> None:
    """A steady-state prefill and decode step under torch.profiler; a flaggems cell's gap to the torch
    cell is attributed to operators (`step_profile.attribute_gap`). Engines without a profile mode and
    failed profile runs leave a note, never a failure: the profile explains, it does not judge."""
    if not cell.engine.profiles_steps:
        cell.row["profile_note"] = f"engine '{cell.engine.name}' has no step profile"
        return
    profile = cell.row.get("profile")
    if profile is None:  # not profiled in the throughput run
        say(f"{cell.name}: profiling a prefill and a decode step")
        try:
            profile = run_worker(cell.spec("profile"), cell.env(), cell.ctx.s.timeout_s, cell.log)
        except RunFailed as exc:
            cell.row["profile_note"] = f"step profile failed: {exc}"[:500]
            return
        cell.row["profile"] = profile
    if cell.backend == "torch":
        state.native_profiles[cell.baseline_key] = profile
    elif (base := state.native_profiles.get(cell.baseline_key)) is not None:
        from portability.serving.engines.flaggems_hook import called_functions

        record = _call_log_dir(cell)
        called = called_functions(record) if record.is_dir() else None
        cell.row["time_gap"] = attribute_gap(base, profile, called or None)


def throughput_gate(cell: ServingCell) -> None:
    """The throughput gate beside the logprob gate: the cell's tok/s against `min_throughput_ratio` of the
    torch cell's. A cell passes only when both hold; `failed_gates` and the reason say which failed."""
    row, minimum = cell.row, cell.ctx.s.min_throughput_ratio
    ratio = row.get("ratio_vs_native")
    if ratio is None:
        row["throughput_gate"] = {"verdict": "not checked", "min_ratio": minimum}
        note = "throughput gate not checked: no torch cell tok/s of the same engine, device and settings"
        row["reason"] = f"{row['reason']}; {note}" if row.get("reason") else note
        return
    passed = ratio >= minimum
    row["throughput_gate"] = {"verdict": "pass" if passed else "fail", "ratio": ratio, "min_ratio": minimum}
    logprob_failed = (row.get("gate") or {}).get("verdict") == "fail"
    row["failed_gates"] = [g for g, bad in (("logprob", logprob_failed), ("throughput", not passed)) if bad]
    if passed:
        return
    why = f"throughput gate failed: {ratio:.2f}x of the torch cell's output tok/s (limit {minimum:.2f}x)"
    if where := main_share(row.get("time_gap") or {}):
        why += f"; {where}"
    if row.get("status") == "pass":
        row["status"] = "fail"
    row["reason"] = f"{row['reason']}; {why}" if row.get("reason") else why


def _dispatched_universe(cell: ServingCell) -> tuple[list[str], str]:
    """The FlagGems functions registered for the aten operators the engine's model dispatches to (every
    FlagGems function where the engine cannot tell), and how to say so."""
    s, engine, log = cell.ctx.s, cell.engine, cell.log
    probe = cell.spec("dispatched_ops", backend="torch")
    dispatched = run_worker(probe, cell.env("torch"), s.timeout_s, log).get("dispatched")
    universe = {"mode": "flaggems_ops", "engine": engine.name, "dispatched": dispatched}
    ops = list(run_worker(universe, {}, s.timeout_s, log)["ops"])
    if engine.name == "vllm-fl":
        from portability.serving.engines.vllm_fl import OOT_OPS

        ops = list(dict.fromkeys([*OOT_OPS, *ops]))
    ops = [op for op in ops if op not in s.flaggems_exclude]  # left off in the cell: not suspects
    return ops, "operators the model dispatches to" if dispatched is not None else "operators"


def step_bisect(cell: ServingCell, ref: dict[str, Any] | None, called: list[str] | None = None) -> None:
    """Name the FlagGems operators behind a failed flaggems cell. With `ref`, the gate failed and a
    subset is guilty when the gate fails with FlagGems on for it alone; without, the engine crashed or
    raised in its throughput run, and a subset is guilty when a short run of the same batch does too.
    The search runs over `bisect_ops` if set, else over the FlagGems functions the failed gate run
    `called` (FlagGems' call log), else over those registered for what the model dispatches to."""
    from portability.serving.bisect import find_culprits

    s, engine, device, log, row = cell.ctx.s, cell.engine, cell.device, cell.log, cell.row
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
        ops, what = _dispatched_universe(cell)
    say(
        f"{engine.name} flaggems@{device}: bisecting {len(ops)} FlagGems {what}"
        f" (at most {s.bisect_max_runs} runs, {s.bisect_budget_s:.0f}s)"
    )

    def fails(subset: list[str]) -> bool:
        env = cell.env("flaggems", include=subset)
        if ref is None:  # reproduce the crash on the same batch, two output tokens
            spec = cell.spec("throughput", backend="flaggems", output_len=2)
        else:
            spec = cell.spec("logprobs", backend="flaggems")
        try:
            got = run_worker(spec, env, s.timeout_s, log)
        except RunFailed as exc:
            failed = exc.status != "timeout"  # a subset that crashes the engine is guilty
        else:
            failed = ref is not None and (
                verdict(
                    compare_logprobs(ref["logprobs"], got["logprobs"], cell.ctx.gate_prompts),
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
            ops, what = _dispatched_universe(cell)
            say(f"  the called functions alone pass: bisecting {len(ops)} FlagGems {what} instead")
    result = find_culprits(ops, fails, s.bisect_max_runs - checks, s.bisect_budget_s)
    row["culprits"] = result.culprits
    runs = result.runs + checks
    row["bisect"] = {"runs": runs, "complete": result.complete, "ops": len(ops), "universe": what}
    suffix = "" if result.complete else f" (run/time budget spent: {len(result.culprits)} suspects left)"
    row["reason"] = f"{row['reason']}; culprits: {', '.join(result.culprits)}{suffix}"
    say(f"{engine.name} flaggems@{device}: culprits {result.culprits}{suffix}")
