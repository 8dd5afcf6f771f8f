"""Run a plan: one pytest session per available cell, in a subprocess, under pytest-xdist.

The controller process (this one) never imports a backend's kernels: a cell's crash, hang or poisoned
device context stays inside pytest's worker processes. Rows land in results.jsonl as cases finish; rows
for cells that cannot run (unavailable / adapter error) and for cases no worker reported are written
here, so every planned case has exactly one row.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import portability
from portability.perf.peaks import PEAKS_ENV, gemm_dtypes
from portability.plan.cells import Cell, Plan
from portability.plan.schedule import order_cases
from portability.results.lock import GENERATION_ENV, PLAN_ENV, RunLock
from portability.results.rundir import RunDir
from portability.results.store import ResultsUnwritable, ResultWriter, iter_results, latest_by_id
from portability.run.proctree import start_session, stop_session

# The pytest session's exit code when a worker could not write a result row (out of space, read-only):
# the run stops, and the cases left are for `--resume` (never recorded as crashes). EX_TEMPFAIL.
EXIT_UNWRITABLE = 75


class PlanMismatch(Exception):
    """--resume with a plan other than the one of the run being resumed."""


def cell_row(cell: Cell) -> dict[str, Any]:
    status = (
        "unavailable" if cell.status == "unavailable" else ("error" if cell.status == "error" else "pass")
    )
    return {
        "id": f"cell:{cell.id}",
        "kind": "cell",
        "cell": cell.id,
        "backend": cell.backend,
        "device": cell.device,
        "status": status,
        "reason": cell.reason or None,
        "device_name": cell.device_name,
        "versions": cell.versions,
        "adapter": cell.adapter,
        "dtypes": cell.dtypes,
        "time": time.time(),
    }


def completed_ids(out: Path, plan: str | None = None) -> set[str]:
    return set(latest_by_id(iter_results(RunDir(out).results, plan)))


def _workers(plan: Plan, cell: Cell, n_cases: int) -> int:
    if plan.workers != "auto":
        return max(1, min(int(plan.workers), n_cases))
    if cell.device == "cpu" or ":" in cell.device:
        return 1  # CPU timings are distorted by parallel workers; a pinned device has one worker
    return max(1, min(cell.device_count, n_cases))


# Re-run before they are reported (a fresh pytest session, so fresh workers): a case that passes then is
# `flaky`. Timeouts are not re-run: a second hang would cost the whole timeout again.
RERUN_STATUSES = ("fail", "error", "crash", "oom")


def run_plan(
    plan: Plan, out: Path, lock: RunLock, resume: bool = False, quiet: bool = False, reruns: int = 0
) -> str:
    """Run every case of the plan, appending rows to out/results.jsonl; `lock` is the run directory's,
    held by the caller; each failing case is re-run up to `reruns` times. Returns the plan's fingerprint
    (stamped on every row)."""
    out.mkdir(parents=True, exist_ok=True)
    results = RunDir(out).results
    if not resume and results.exists():
        results.unlink()
    fingerprint = _resumed_fingerprint(plan, out) if resume else plan.fingerprint()
    done = completed_ids(out, fingerprint) if resume else set()
    writer = ResultWriter(results, generation=lock.generation, plan=fingerprint)
    for cell in plan.cells:
        row_id = f"cell:{cell.id}"
        if row_id not in done:
            writer.append(cell_row(cell))
    if not resume or not RunDir(out).plan.exists():
        _write_atomically(plan, RunDir(out).plan)
    for req, why in plan.refused:  # refused at plan time: recorded, never run
        if req.id not in done:
            writer.append(
                {
                    **req.identity(),
                    "status": "skip",
                    "reason": f"refused at plan time: {why}",
                    "time": time.time(),
                }
            )
    left = [c for c in plan.cases if c.id not in done]
    ordered = [  # per cell, the order its worksteal workers are fed in (see schedule.py)
        case
        for cell in plan.cells
        for cases in [[c for c in left if c.cell == cell.id]]
        for case in order_cases(cases, _workers(plan, cell, len(cases)))
    ]
    todo = Plan(plan.cells, ordered, plan.timeout_s, plan.workers)
    _write_atomically(todo, RunDir(out).cells_plan)
    (out / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    worst = 0
    for cell in todo.cells:
        cases = todo.cases_of(cell)
        if cell.status != "available" or not cases:
            continue
        if not quiet:
            sys.stderr.write(f"== {cell.id}: {len(cases)} case(s) on {cell.device_name or cell.device}\n")
        measure_peaks(cell, out)
        code = _run_cell(todo, cell, len(cases), out, lock.generation, fingerprint)
        if code == EXIT_UNWRITABLE:  # a worker could not write its row: stop, leave the rest for --resume
            raise ResultsUnwritable(f"{results}: a worker could not write its result row{_space_note(out)}")
        worst = max(worst, code)
        # Anything still without a row is recorded, not lost. pytest exit codes 0/1 mean it ran the session
        # (a case left over is a crash of that case); any other code means the harness itself broke: infra.
        have = completed_ids(out, fingerprint)
        status = "crash" if code in (0, 1) else "infra"
        log = f"logs/pytest.{cell.backend}@{cell.device.replace(':', '_')}.log"
        for req in cases:
            if req.id not in have:
                writer.append(
                    {
                        **req.identity(),
                        "status": status,
                        "reason": f"no result: the pytest session for this cell "
                        f"exited with code {code} before running this case (see {log})",
                        "time": time.time(),
                    }
                )
        for attempt in range(2, reruns + 2):
            if not _rerun_failures(todo, cell, cases, out, writer, attempt, quiet):
                break
    return fingerprint


def _rerun_failures(
    plan: Plan, cell: Cell, cases: list[Any], out: Path, writer: ResultWriter, attempt: int, quiet: bool
) -> bool:
    """Run the cell's cases whose latest row is a re-runnable failure again, in a run directory of their
    own (its own lock and generation), and append one merged row per case with `writer`: `flaky` if it
    passed now, else the new failure; both outcomes kept in `attempts`. False when nothing was re-run."""
    latest = latest_by_id(iter_results(RunDir(out).results, writer.plan))
    again = [c for c in cases if latest.get(c.id, {}).get("status") in RERUN_STATUSES]
    if not again:
        return False
    rerun_dir = RunDir(out).rerun(cell.id, attempt)
    if rerun_dir.path.exists():
        shutil.rmtree(rerun_dir.path)
    rerun_dir.path.mkdir(parents=True)
    rerun_plan = Plan(plan.cells, again, plan.timeout_s, plan.workers)
    _write_atomically(rerun_plan, rerun_dir.cells_plan)
    (rerun_dir.path / "pytest.ini").write_text((out / "pytest.ini").read_text())
    if RunDir(out).peaks.exists():
        shutil.copy(RunDir(out).peaks, rerun_dir.peaks)
    if not quiet:
        sys.stderr.write(f"== {cell.id}: re-running {len(again)} failing case(s), attempt {attempt}\n")
    lock = RunLock.acquire(rerun_dir.path)
    try:
        _run_cell(rerun_plan, cell, len(again), rerun_dir.path, lock.generation, writer.plan or "")
    finally:
        lock.release()
    second = latest_by_id(iter_results(rerun_dir.results, writer.plan))
    for req in again:
        writer.append(merge_attempts(latest[req.id], second.get(req.id), attempt))
    return True


def _outcome(row: dict[str, Any]) -> dict[str, Any]:
    return {"status": row["status"], "reason": row.get("reason")}


def merge_attempts(first: dict[str, Any], again: dict[str, Any] | None, attempt: int) -> dict[str, Any]:
    """One row for a re-run case: `flaky` (with the passing run's figures) if the re-run passed, the
    re-run's failure if it failed again, the earlier row if the re-run gave no operator verdict."""
    attempts = [*first.get("attempts", [_outcome(first)])]
    attempts.append(_outcome(again) if again else {"status": "infra", "reason": "no row from the re-run"})
    if again and again["status"] == "pass":
        earlier = "; ".join(f"{a['status']}: {a['reason']}" for a in attempts[:-1])
        why = f"passed on attempt {attempt}, after {earlier}"
        return {**again, "status": "flaky", "reason": why[:2000], "attempts": attempts}
    if again and again["status"] in (*RERUN_STATUSES, "timeout"):
        return {**again, "attempts": attempts}
    return {**first, "attempts": attempts, "time": time.time()}


def _resumed_fingerprint(plan: Plan, out: Path) -> str:
    """The fingerprint of the run being resumed; PlanMismatch when this plan would run other cases (its
    rows would mix two plans). A plan with no operator case (--serving-only) resumes any run."""
    earlier = RunDir(out).read_json(RunDir(out).plan)
    if earlier is None:
        return plan.fingerprint()
    recorded = earlier.get("fingerprint")
    if not plan.cases or recorded in (None, plan.fingerprint()):
        return recorded or plan.fingerprint()
    raise PlanMismatch(
        f"--resume: this command plans other cases than the run in {out} (plan {plan.fingerprint()[:12]}, "
        f"the run's is {str(recorded)[:12]}), expected the same matrix and filters as that run"
    )


def _space_note(out: Path) -> str:
    """Why a write in `out` may have failed, as far as the filesystem tells."""
    try:
        if not os.access(out, os.W_OK):
            return " (the directory is not writable)"
        if os.statvfs(out).f_bavail == 0:
            return " (no space left on its filesystem)"
    except OSError:
        pass
    return " (see the logs)"


def _write_atomically(plan: Plan, path: Path) -> None:
    """A kill -9 while writing a plan file leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    plan.write(tmp)
    os.replace(tmp, path)


def _run_cell(plan: Plan, cell: Cell, n_cases: int, out: Path, generation: str, fingerprint: str) -> int:
    n = _workers(plan, cell, n_cases)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        str(RunDir(out).cells_plan),
        "-c",
        str(out / "pytest.ini"),
        "--rootdir",
        str(out),
        "-p",
        "portability.run.pytest_plugin",
        f"--portability-out={out}",
        f"--portability-cell={cell.id}",
        "-n",
        str(n),
        "--max-worker-restart",
        "100000",
        # worksteal, not load: a case that hangs until its timeout keeps no queue of other cases on its
        # worker; idle workers take them (all but pytest's `nextitem`). Seen on an H100: one FlagGems
        # case that never returned held its worker's cases back for the whole 300 s.
        "--dist",
        "worksteal",
        f"--timeout={plan.timeout_s:g}",
        "--timeout-method=thread",
        "-q",
        "--no-header",
        "-s",
        "-rN",
    ]
    env = dict(os.environ)
    env.update(cell.env)
    env["PORTABILITY_CELL"] = cell.id  # adapters can tell a cell's worker from the planning process
    env[PEAKS_ENV] = str(RunDir(out).peaks)  # the roofs of the cases' roofline_pct (perf/measure.py)
    env[GENERATION_ENV], env[PLAN_ENV] = generation, fingerprint  # rows only from this run (results/lock.py)
    src_root = str(Path(portability.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    log = out / "logs" / f"pytest.{cell.backend}@{cell.device.replace(':', '_')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    proc = start_session(cmd, env)
    copier = threading.Thread(target=_copy_to_log, args=(proc.stdout, log), daemon=True)
    copier.start()
    try:
        proc.wait()
    finally:  # an interrupt (or any error here) stops the session and its workers: nothing keeps running
        if proc.poll() is None:
            stop_session(proc)
        copier.join(timeout=5)
    return proc.returncode


def measure_peaks(cell: Cell, out: Path) -> None:
    """The cell's device peaks (copy bandwidth, GEMM FLOP/s at the cell's dtypes) into the run's
    peaks.json, measured in a subprocess with the cell's environment (this process never touches a
    device) or read from the per-device cache. A device whose peaks cannot be measured gets the reason,
    and its cases no roofline_pct."""
    rundir = RunDir(out)
    known = rundir.read_json(rundir.peaks) or {}
    have = known.get(cell.device, {})
    if "error" not in have and have and all(d in have.get("flops", {}) for d in gemm_dtypes(cell.dtypes)):
        return  # another cell on this device measured it (at these dtypes) already
    cmd = [sys.executable, "-m", "portability.perf.peaks", "--device", cell.device]
    cmd += ["--dtypes", ",".join(cell.dtypes)]
    env = {**os.environ, **cell.env}
    src_root = str(Path(portability.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
        lines = proc.stdout.strip().splitlines()
        peaks = json.loads(lines[-1]) if proc.returncode == 0 and lines else None
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    except (subprocess.TimeoutExpired, ValueError) as exc:
        peaks, why = None, f"{type(exc).__name__}: {exc}"
    known[cell.device] = peaks or {"error": f"peaks not measured: {why}"[:500]}
    rundir.write_json(rundir.peaks, known)


def _timing_share(out: Path) -> dict[str, Any]:
    """Worker-seconds of the run's cases and the part of them spent in the timing stage."""
    rows = [r for r in latest_by_id(iter_results(RunDir(out).results)).values() if r.get("kind") == "op"]
    cases_s = sum(r.get("duration_s") or 0.0 for r in rows)
    timing_s = sum(r.get("timing_s") or 0.0 for r in rows)
    return {
        "cases_s": round(cases_s, 1),
        "timing_s": round(timing_s, 1),
        "timing_share": round(timing_s / cases_s, 3) if cases_s else None,
    }


def _copy_to_log(stream: IO[bytes] | None, log: Path) -> None:
    """The session's output into its log, best effort: a full disk loses log lines, never the session."""
    if stream is None:
        return
    try:
        fh = log.open("ab")
    except OSError:
        fh = None
    for chunk in iter(lambda: stream.read1(65536), b""):
        if fh is not None:
            try:
                fh.write(chunk)
                fh.flush()
            except OSError:
                pass
    if fh is not None:
        try:
            fh.close()
        except OSError:
            pass


def write_run_info(
    out: Path, argv: list[str], matrix: str, started: float, interrupted_by: str | None = None
) -> None:
    info = {
        "command": "portability " + " ".join(argv),
        "matrix": matrix,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "started": started,
        "finished": time.time(),
        "wall_s": round(time.time() - started, 1),
        "portability": portability.__version__,
        # harness cost: per-case worker-seconds (parallel workers add up beyond wall_s), the timing part
        **_timing_share(out),
        "peaks": RunDir(out).read_json(RunDir(out).peaks) or {},
        "interrupted": interrupted_by is not None,  # the scorecard's verdict says so
        "signal": interrupted_by,
    }
    RunDir(out).write_json(RunDir(out).run_info, info)
