"""Run the serving cells: engine × backend × device, every engine run in its own subprocess.

Per cell, after `probe()` of the backend on the device and of the engine (unavailable, with the reason,
never a failure): offline throughput (dummy weights by default), online latency through the engine's
OpenAI server driven by vLLM's own serving benchmark, then the accuracy gate: teacher-forced prompt
log-probabilities on the seeded synthetic checkpoint, compared position by position with the reference
(the `hf` engine, backend torch, float32, same weights, same device): max |Δ logprob| of the actual next
tokens and mean KL gate the cell, greedy-token agreement is reported. A flaggems cell that fails the
gate is bisected over FlagGems' operators to name the culprits. Torch cells run first, so every other
backend's tok/s can be given as a ratio to the torch backend of the same engine and device. This module
orders and probes the cells, keeps one result row per cell and stops cleanly on SIGTERM; the steps
themselves are in `steps.py`, the context they share in `cell_context.py`.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

from portability.results.store import ResultWriter, read_results
from portability.serving.cell_context import CellContext
from portability.serving.procs import RunFailed
from portability.serving.settings import ServingSettings
from portability.serving.steps import (
    METRIC_FIELDS,
    SET_UP_FAILURES,
    say,
    step_bisect,
    step_gate,
    step_online,
    step_throughput,
)


def _probe_backend(backend: str, device: str) -> tuple[bool, str, str]:
    """(available, reason, device name) of the backend's adapter on the device."""
    try:
        from portability.registry import adapter_class

        a = adapter_class(backend)(device).probe()
    except Exception as exc:
        return False, f"backend '{backend}' could not be probed: {type(exc).__name__}: {exc}", ""
    return a.available, a.reason, a.device_name


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
    ctx: CellContext | None = None
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
        # FlagGems with some functions left off is another configuration than all of it: its own id
        excluded = settings.flaggems_exclude if backend == "flaggems" else []
        without = f":without:{','.join(excluded)}" if excluded else ""
        row: dict[str, Any] = {
            "id": f"serving:{engine_name}{mode}:{backend}@{device}:{settings.model_name}{without}",
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
            "flaggems_exclude": excluded,
            "time": time.time(),
            **dict.fromkeys(METRIC_FIELDS),
        }
        if row["id"] in served:
            kept = served[row["id"]]["status"]
            say(f"{engine_name}{mode} {backend}@{device}: kept from the earlier run ({kept})")
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
            say(f"{engine_name} {backend}@{device}: unavailable: {reason}")
            writer.append({**row, "status": "unavailable", "reason": reason})
            continue
        if ctx is None and not setup_error:
            try:
                ctx = CellContext(settings, out_dir)
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
        say(
            f"{engine_name} {backend}@{device}: {row['status']}"
            + (f" ({row['reason']})" if row["reason"] else "")
        )
        writer.append(row)


def _serve_cell(ctx, engine, backend, device, mode, row, native, references) -> None:
    """Throughput, online latency and the gate of one cell, into `row`; a failed flaggems cell is bisected."""
    settings, engine_name = ctx.s, engine.name
    log = ctx.logs / f"serving.{engine_name}.{backend}@{device.replace(':', '_')}.log"
    env = ctx.env(engine, backend)
    try:
        step_throughput(ctx, engine_name, backend, device, env, log, row, native, mode)
        online_failed = None
        if settings.online and engine.serves_openai:
            try:
                step_online(ctx, engine, backend, device, env, log, row)
            except RunFailed as exc:  # the gate still runs: its verdict is not lost to a server failure
                online_failed = exc
        step_gate(ctx, engine, backend, device, log, row, references)
        if online_failed is not None:
            gate_reason = f"; {row['reason']}" if row["reason"] else ""
            why = f"online: {online_failed}"[-1500:] + gate_reason
            row.update(status=online_failed.status, reason=why)
    except RunFailed as exc:
        row.update(status=exc.status, reason=str(exc)[-2000:])
        set_up = any(phrase in str(exc) for phrase in SET_UP_FAILURES)
        if backend == "flaggems" and settings.bisect and exc.status in ("error", "crash") and not set_up:
            try:
                step_bisect(ctx, engine, device, log, row, None)  # the engine crashed or raised
            except RunFailed as again:
                row["reason"] += f"; bisection could not run: {again}"
