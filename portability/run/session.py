"""Run a plan: one pytest session per available cell, in a subprocess, under pytest-xdist.

The controller process (this one) never imports a backend's kernels: a cell's crash, hang or poisoned
device context stays inside pytest's worker processes. Rows land in results.jsonl as cases finish; rows
for cells that cannot run (unavailable / adapter error) and for cases no worker reported are written
here, so every planned case has exactly one row.
"""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import portability
from portability.plan.cells import Cell, Plan
from portability.plan.schedule import order_cases
from portability.results.rundir import RunDir
from portability.results.store import ResultWriter, iter_results, latest_by_id


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


def completed_ids(out: Path) -> set[str]:
    return set(latest_by_id(iter_results(RunDir(out).results)))


def _workers(plan: Plan, cell: Cell, n_cases: int) -> int:
    if plan.workers != "auto":
        return max(1, min(int(plan.workers), n_cases))
    if cell.device == "cpu" or ":" in cell.device:
        return 1  # CPU timings are distorted by parallel workers; a pinned device has one worker
    return max(1, min(cell.device_count, n_cases))


# Re-run before they are reported (a fresh pytest session, so fresh workers): a case that passes then is
# `flaky`. Timeouts are not re-run: a second hang would cost the whole timeout again.
RERUN_STATUSES = ("fail", "error", "crash", "oom")


def run_plan(plan: Plan, out: Path, resume: bool = False, quiet: bool = False, reruns: int = 0) -> int:
    """Run every case of the plan, appending rows to out/results.jsonl; re-run each failing case up to
    `reruns` times. Returns the worst pytest exit code."""
    out.mkdir(parents=True, exist_ok=True)
    results = RunDir(out).results
    if not resume and results.exists():
        results.unlink()
    if resume:
        _drop_torn_tail(results)
    done = completed_ids(out) if resume else set()
    writer = ResultWriter(results)
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
        code = _run_cell(todo, cell, len(cases), out)
        worst = max(worst, code)
        # Anything still without a row is recorded, not lost. pytest exit codes 0/1 mean it ran the session
        # (a case left over is a crash of that case); any other code means the harness itself broke: infra.
        have = completed_ids(out)
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
            if not _rerun_failures(todo, cell, cases, out, attempt, quiet):
                break
    return worst


def _rerun_failures(plan: Plan, cell: Cell, cases: list[Any], out: Path, attempt: int, quiet: bool) -> bool:
    """Run the cell's cases whose latest row is a re-runnable failure again, in a run directory of their
    own, and append one merged row per case: `flaky` if it passed now, else the new failure; both
    outcomes kept in `attempts`. False when there was nothing to re-run."""
    latest = latest_by_id(iter_results(RunDir(out).results))
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
    if not quiet:
        sys.stderr.write(f"== {cell.id}: re-running {len(again)} failing case(s), attempt {attempt}\n")
    _run_cell(rerun_plan, cell, len(again), rerun_dir.path)
    second = latest_by_id(iter_results(rerun_dir.results))
    writer = ResultWriter(RunDir(out).results)
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


def _drop_torn_tail(results: Path) -> None:
    """A run killed in the middle of an append can leave a last line without its newline. Readers ignore
    it, but a resumed run appending after it would glue its first row onto it (and lose that row): cut the
    file back to its last complete line first."""
    if not results.exists():
        return
    data = results.read_bytes()
    keep = data.rfind(b"\n") + 1
    if keep < len(data):
        with results.open("r+b") as fh:
            fh.truncate(keep)
            os.fsync(fh.fileno())


def _write_atomically(plan: Plan, path: Path) -> None:
    """A kill -9 while writing a plan file leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    plan.write(tmp)
    os.replace(tmp, path)


def _run_cell(plan: Plan, cell: Cell, n_cases: int, out: Path) -> int:
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
    src_root = str(Path(portability.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src_root, env.get("PYTHONPATH")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    log = out / "logs" / f"pytest.{cell.backend}@{cell.device.replace(':', '_')}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as fh:
        # argv list, never a shell: no text from matrix.yaml is ever interpreted by a shell.
        proc = subprocess.run(cmd, env=env, stdout=fh, stderr=None, check=False)
    return proc.returncode


def write_run_info(out: Path, argv: list[str], matrix: str, started: float) -> None:
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
    }
    RunDir(out).write_json(RunDir(out).run_info, info)
