"""Run the serving cells: engine × backend × device, every engine run in its own subprocess.

Per cell, after `probe()` of the backend on the device and of the engine (unavailable, with the reason,
never a failure): offline throughput (dummy weights by default), online latency through the engine's
OpenAI server driven by vLLM's own serving benchmark, then the accuracy gate: teacher-forced prompt
log-probabilities on the seeded synthetic checkpoint, compared position by position with the reference
(the `hf` engine, backend torch, float32, same weights, same device): max |Δ logprob| of the actual next
tokens and mean KL gate the cell, greedy-token agreement is reported. A flaggems cell that fails the
gate is bisected over FlagGems' operators to name the culprits. A prefill and a decode step are profiled
(engines that can) and a flaggems cell's gap to the torch cell attributed to operators. Torch cells run
first, so every other backend's tok/s can be given as a ratio to the torch backend of the same engine,
device and tensor-parallel size: the throughput gate (`serving.min_throughput_ratio`) judges it beside
the logprob gate. Each cell is served at every `serving.tensor_parallel_size`. This module
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
from portability.serving.cell import RunState, ServingCell
from portability.serving.cell_context import CellContext
from portability.serving.engines import ENGINES, ServingEngine, get_engine
from portability.serving.procs import RunFailed
from portability.serving.settings import ServingSettings
from portability.serving.steps import (
    METRIC_FIELDS,
    SET_UP_FAILURES,
    say,
    step_bisect,
    step_gate,
    step_online,
    step_profile,
    step_throughput,
    throughput_gate,
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
    state = RunState()
    # A resumed run (`portability run --resume`) keeps the serving rows it already has: those cells are
    # not served again, and their torch tok/s and profiles stay the baseline of the others.
    served = {
        r["id"]: r for r in read_results(writer.path) if r.get("kind") == "serving" and not r.get("stopped")
    }
    for r in served.values():
        if r.get("backend") == "torch":
            state.keep_torch_row(r)
    setup = _Setup(settings, Path(out_dir))
    # torch cells first: every other backend is set against the torch cell of its engine, device and TP
    order = sorted(cells, key=lambda c: (c[0], c[2], c[1] != "torch"))
    for cell in order:
        for size in settings.tensor_parallel_size:
            row = _new_row(cell[0], cell[1], cell[2], size, settings)
            if row["id"] in served:
                kept = served[row["id"]]["status"]
                say(f"{cell[0]} {cell[1]}@{cell[2]}: kept from the earlier run ({kept})")
                continue
            _serve_one(cell, size, row, setup, state, writer)


def _new_row(engine: str, backend: str, device: str, tp: int, settings: ServingSettings) -> dict[str, Any]:
    """The row of one cell before it is served. CUDA graphs on and off are different serving modes of the
    same cell, FlagGems with some functions left off another configuration than all of it, a TP size
    another placement: each its own id, so all can sit in one merged scorecard."""
    on_cpu = device.split(":")[0] == "cpu"
    graphs = engine.startswith("vllm") and not on_cpu and not settings.enforce_eager
    mode = "+graphs" if graphs else ""
    excluded = settings.flaggems_exclude if backend == "flaggems" else []
    without = f":without:{','.join(excluded)}" if excluded else ""
    tp_suffix = f":tp{tp}" if tp > 1 else ""
    return {
        "id": f"serving:{engine}{mode}:{backend}@{device}:{settings.model_name}{tp_suffix}{without}",
        "kind": "serving",
        "cuda_graphs": graphs,
        "cell": f"{backend}@{device}",
        "backend": backend,
        "device": device,
        "engine": engine,
        "tensor_parallel_size": tp,
        "model": settings.model_name,
        "weights": settings.weights_label,
        "reason": None,
        "gate": None,
        "culprits": [],
        "flaggems_exclude": excluded,
        "time": time.time(),
        **dict.fromkeys(METRIC_FIELDS),
    }


class _Setup:
    """What the cells share and build once: the backend probes and the `CellContext` (on first use)."""

    def __init__(self, settings: ServingSettings, out_dir: Path) -> None:
        self.settings, self.out_dir = settings, out_dir
        self.probes: dict[tuple[str, str], tuple[bool, str, str]] = {}
        self.ctx: CellContext | None = None
        self.error = ""

    def backend_probe(self, backend: str, device: str) -> tuple[bool, str, str]:
        if (backend, device) not in self.probes:
            self.probes[(backend, device)] = _probe_backend(backend, device)
        return self.probes[(backend, device)]

    def context(self) -> CellContext | None:
        if self.ctx is None and not self.error:
            try:
                self.ctx = CellContext(self.settings, self.out_dir)
            except Exception as exc:
                self.error = f"serving setup failed: {type(exc).__name__}: {exc}"
        return self.ctx


def _unavailable_reason(
    engine: ServingEngine, backend: str, device: str, tp: int, setup: _Setup
) -> str | None:
    """Why the cell cannot be served here (None: it can); fills the row's device name as a side note."""
    ok, reason, _ = setup.backend_probe(backend, device)
    if not ok:
        return reason
    avail = engine.probe(backend, device)
    if not avail.available:
        return avail.reason
    pairing = engine.pairing()
    if pairing is not None and pairing.mismatched and not setup.settings.allow_mismatched_pair:
        return f"{pairing.text} (to serve it anyway: serving.allow_mismatched_pair, --allow-mismatched-pair)"
    return engine.tensor_parallel_reason(device, tp)


def _serve_one(
    cell: tuple[str, ...], tp: int, row: dict[str, Any], setup: _Setup, state: RunState, writer: ResultWriter
) -> None:
    """Probe, serve and record one cell at one tensor-parallel size."""
    engine_name, backend, device = cell[0], cell[1], cell[2]
    if len(cell) >= 5 and cell[3] != "available":
        writer.append({**row, "status": "unavailable", "reason": cell[4]})
        return
    if engine_name not in ENGINES:
        writer.append({**row, "status": "error", "reason": f"unknown serving engine '{engine_name}'"})
        return
    engine = get_engine(engine_name)
    row["versions"] = engine.versions()
    row["device_name"] = setup.backend_probe(backend, device)[2]
    if (pairing := engine.pairing()) is not None:
        row["pair"] = {"text": pairing.text, "mismatched": pairing.mismatched}
    if (reason := _unavailable_reason(engine, backend, device, tp, setup)) is not None:
        say(f"{engine_name} {backend}@{device}: unavailable: {reason}")
        writer.append({**row, "status": "unavailable", "reason": reason})
        return
    ctx = setup.context()
    if ctx is None:
        writer.append({**row, "status": "error", "reason": setup.error})
        return
    if engine_name == "hf" and not setup.settings.real_weights:
        row["weights"] = "synthetic"
    mode = "+graphs" if row["cuda_graphs"] else ""
    served = ServingCell(ctx, engine, backend, device, tp, mode, row)
    t_cell = time.perf_counter()
    try:
        _serve_cell(served, state)
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
    say(f"{served.name}: {row['status']}" + (f" ({row['reason']})" if row["reason"] else ""))
    writer.append(row)


def _serve_cell(cell: ServingCell, state: RunState) -> None:
    """Throughput, online latency, the gate and the step profile of one cell, into its row; a failed
    flaggems cell is bisected; the throughput gate is judged last (its reason names the main gap)."""
    settings, row = cell.ctx.s, cell.row
    try:
        step_throughput(cell, state)
        online_failed = None
        if settings.online and cell.engine.serves_openai:
            try:
                step_online(cell)
            except RunFailed as exc:  # the gate still runs: its verdict is not lost to a server failure
                online_failed = exc
        step_gate(cell, state)
        if settings.profile:
            step_profile(cell, state)
        throughput_gate(cell)
        if online_failed is not None:
            gate_reason = f"; {row['reason']}" if row["reason"] else ""
            why = f"online: {online_failed}"[-1500:] + gate_reason
            row.update(status=online_failed.status, reason=why)
    except RunFailed as exc:
        row.update(status=exc.status, reason=str(exc)[-2000:])
        set_up = any(phrase in str(exc) for phrase in SET_UP_FAILURES)
        if cell.backend == "flaggems" and settings.bisect and exc.status in ("error", "crash") and not set_up:
            try:
                step_bisect(cell, None)  # the engine crashed or raised
            except RunFailed as again:
                row["reason"] += f"; bisection could not run: {again}"
