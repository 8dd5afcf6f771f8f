"""The pytest plugin that turns a plan file into test items, one per case.

We lean on pytest for what it does well: pytest-xdist runs items in worker processes (one per device on
multi-device hosts) and replaces a worker that dies, pytest-timeout (thread method) kills a worker whose
case hangs, even inside a C call. The plugin adds what they don't: each item writes its result row to
results.jsonl before returning; each worker's stdout/stderr go to a log file so that when a worker dies
the controller can record the case as `crash` or `timeout` with the last words it printed.

Loaded explicitly (`pytest -p portability.run.pytest_plugin`) by `portability.run.session`.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from portability.plan.case_id import CaseId, strip_pytest_file
from portability.registry import baseline_name
from portability.results.lock import GENERATION_ENV, PLAN_ENV
from portability.results.rundir import RunDir
from portability.results.status import FAILING, NEUTRAL
from portability.results.store import ResultsUnwritable, ResultWriter, StaleRun, iter_results
from portability.run.proctree import SESSION_PID_ENV, watch_parent
from portability.scorecard.safe_text import visible

# The session's exit code when a row could not be written (see run/session.py: EXIT_UNWRITABLE).
EXIT_UNWRITABLE = 75

# Errors after which a device context is unusable for the rest of the process (sticky CUDA/driver faults
# a kernel causes): the case is a `crash` and the worker ends itself so the next case gets a fresh context.
POISONING_ERRORS = (
    "illegal memory access",
    "illegal address",
    "device-side assert",
    "unspecified launch failure",
    "misaligned address",
    "an illegal instruction",
)
# Errors that say the device itself is gone or broken (matched case-insensitively): hardware or driver,
# not the operator. The case is `infra`, never an operator failure; the worker ends itself as above.
DEVICE_LOST_ERRORS = (
    "device lost",
    "gpu is lost",
    "fallen off the bus",
    "no cuda-capable device is detected",
    "busy or unavailable",
    "uncorrectable ecc",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("portability")
    group.addoption("--portability-out", default=None, help="run directory (results.jsonl, logs/)")
    group.addoption("--portability-cell", default=None, help="the cell (backend@device) this session runs")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name.endswith(".plan.json"):
        return PlanFile.from_parent(parent, path=file_path)
    return None


class PlanFile(pytest.File):
    def collect(self):  # type: ignore[override]
        from portability.plan.cells import Plan

        plan = Plan.read(self.path)
        cell_id = self.config.getoption("--portability-cell")
        for req in plan.cases:
            if cell_id and req.cell != cell_id:
                continue
            yield CaseItem.from_parent(self, name=req.id, request=req)


def _worker_id(config: pytest.Config) -> str:
    return getattr(config, "workerinput", {}).get("workerid", "main")


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def _log_path(config: pytest.Config, worker: str) -> Path:
    out = Path(config.getoption("--portability-out"))
    return RunDir(out).logs / f"{_safe(config.getoption('--portability-cell') or 'all')}.{worker}.log"


def _start_marker(config: pytest.Config, worker: str) -> Path:
    return _log_path(config, worker).with_suffix(".inflight")


_ADAPTERS: dict[str, Any] = {}


def _adapters_for(config: pytest.Config, cell_id: str) -> tuple[Any, Any]:
    """(adapter, baseline adapter or None), built once per worker process."""
    if cell_id not in _ADAPTERS:
        from portability.plan.cells import Plan
        from portability.registry import adapter_class

        plan = Plan.read(RunDir(Path(config.getoption("--portability-out"))).cells_plan)
        cell = next(c for c in plan.cells if c.id == cell_id)
        device = cell.device
        if ":" not in device and device != "cpu" and cell.device_count > 1:
            worker = _worker_id(config)
            index = int(worker[2:]) % cell.device_count if worker.startswith("gw") else 0
            device = f"{device}:{index}"
        adapter = adapter_class(cell.adapter)(device, cell.options)
        baseline = None
        if not adapter.is_baseline:
            baseline = adapter_class(baseline_name())(device, {})
        _ADAPTERS[cell_id] = (adapter, baseline, cell)
    adapter, baseline, _cell = _ADAPTERS[cell_id]
    return adapter, baseline


class CaseItem(pytest.Item):
    def __init__(self, *, request: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.request = request

    def runtest(self) -> None:
        req = self.request
        worker = _worker_id(self.config)
        try:
            _announce(self.config, worker, req.id)
        except OSError as exc:  # the run directory is full or read-only: nothing of this case could be kept
            self._stop_unwritten(f"{_start_marker(self.config, worker)}: {exc.strerror}")
            return
        full = self._run(req, worker)
        end_worker = full.pop("_end_worker", False)
        try:
            _writer(self.config).append(full)
        except ResultsUnwritable as exc:
            self._stop_unwritten(str(exc))
            return
        except StaleRun:  # orphaned by an earlier run of this directory: its rows are no longer wanted
            os._exit(1)
        _start_marker(self.config, worker).unlink(missing_ok=True)
        # user_properties travel to the xdist controller through execnet: plain JSON types only.
        self.user_properties.append(("row", json.loads(json.dumps(full, default=str))))
        status, reason = full["status"], full.get("reason")
        if end_worker:
            # The rest of this process would fail on the poisoned context: end it so xdist starts a fresh
            # worker. The row is already on disk, so the controller will not write a second one.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(3)
        if status in FAILING:
            raise CaseFailed(f"{status}: {reason}")
        if status in NEUTRAL:
            pytest.skip(f"{status}: {reason}")

    def _run(self, req: Any, worker: str) -> dict[str, Any]:
        """The case's full row (`_end_worker` set when the worker must end after writing it)."""
        from portability.run.case import run_case

        started = time.perf_counter()
        adapter = None
        try:
            adapter, baseline = _adapters_for(self.config, req.cell)
        except Exception as exc:
            # Set-up of the worker (adapter construction: device init, runtime load, its own allocations)
            # failed: infrastructure, not this operator. Not cached, so the next case tries again.
            row = {"status": "infra", "reason": f"adapter set-up failed in the worker: {_short(exc)}"}
        else:
            row = run_case(req, adapter, baseline)
        reason = (row.get("reason") or "").lower()
        device_lost = row["status"] in FAILING and any(p in reason for p in DEVICE_LOST_ERRORS)
        poisoned = not device_lost and row["status"] == "error" and any(p in reason for p in POISONING_ERRORS)
        if device_lost:
            row["status"], row["reason"] = "infra", f"device lost: {row['reason']}"
        elif poisoned:
            row["status"], row["reason"] = "crash", f"device context poisoned: {row['reason']}"
        return {
            **req.identity(),
            **row,
            "duration_s": round(time.perf_counter() - started, 4),
            "device_name": (_quietly(adapter.device_name) or "")
            if adapter and not (poisoned or device_lost)
            else "",
            "versions": (_quietly(adapter.versions) or {}) if adapter else {},
            "worker": worker,
            "time": time.time(),
            **({"_end_worker": True} if poisoned or device_lost else {}),
        }

    def _stop_unwritten(self, why: str) -> None:
        """No row could be written: this worker stops taking cases (xdist then stops the session), and the
        controller records nothing for this case, so `--resume` runs it (it is not a crash)."""
        self.session.shouldstop = f"results not written: {why}"
        self.user_properties.append(("unwritten", why))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, self.request.id


def _announce(config: pytest.Config, worker: str, case_id: str) -> None:
    """The in-flight marker (which case this worker runs, from which log offset) and the log's case line:
    if the worker dies, the controller records the case with the last words it printed."""
    log = _log_path(config, worker)
    offset = log.stat().st_size if log.exists() else 0
    _start_marker(config, worker).write_text(json.dumps({"id": case_id, "offset": offset, "t": time.time()}))
    print(f"--- case {case_id}", flush=True)


def _read_marker(marker: Path) -> dict[str, Any]:
    """A worker's in-flight marker; {} when missing, empty or torn (a full disk, a kill mid-write)."""
    try:
        info = json.loads(marker.read_bytes() or b"{}")
    except (OSError, ValueError):
        return {}
    if not isinstance(info, dict):
        return {}
    return {k: v for k, v in info.items() if k != "t" or isinstance(v, (int, float))}


def _writer(config: pytest.Config) -> ResultWriter:
    """This run's writer: rows stamped with the run's plan, refused once the run is no longer live."""
    out = Path(config.getoption("--portability-out"))
    return ResultWriter(RunDir(out).results, os.environ.get(GENERATION_ENV), os.environ.get(PLAN_ENV))


def _short(exc: BaseException) -> str:
    from portability.run.case import _short as short

    return short(exc)


def _quietly(fn: Any) -> Any:
    """Metadata for the row (device name, versions): never worth losing the row over."""
    try:
        return fn()
    except Exception:
        return None


class CaseFailed(Exception):
    """A case whose status counts as a failure."""


# --- worker side: send output to a per-worker log so a dead worker's last words survive --------------


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    out = config.getoption("--portability-out", None)
    if not out:
        return
    config.pluginmanager.register(_Progress(config), "portability-progress")
    if hasattr(config, "workerinput") or config.getoption("numprocesses", None) in (None, 0):
        log = _log_path(config, _worker_id(config))
        log.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        if hasattr(config, "workerinput"):
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            _share_cpu_threads(int(config.workerinput.get("workercount", 1)))
    if hasattr(config, "workerinput"):
        session_pid = os.environ.get(SESSION_PID_ENV, "")
        watch_parent(int(session_pid) if session_pid.isdigit() else None)
        from portability.perf.timing import warm_up_profiler

        warm_up_profiler()  # outside every case's timeout: the profiler's first start takes seconds
    else:
        os.environ[SESSION_PID_ENV] = str(os.getpid())  # inherited by the workers xdist starts


def _share_cpu_threads(workers: int) -> None:
    """Several workers each running torch's default one intra-op thread per core oversubscribe the host
    (seen on a 16-core GPU box with 12 workers: cases with vocabulary-sized CPU inputs and float64
    references took 20-66 s each): give each worker its share of the cores."""
    if workers > 1:
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


# --- controller side: progress lines, and rows for cases whose worker died ---------------------------


class _Progress:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.done = 0
        self.total = 0
        self.started = time.monotonic()
        self.is_worker = hasattr(config, "workerinput")
        self.eta = _BytesEta(config) if not self.is_worker else None
        self.unwritten = ""

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.total = len(session.items)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        self.total = len(ids)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.is_worker:
            return
        crashed = report.when == "???"  # xdist's report for an item whose worker died
        if not (report.when == "call" or crashed or (report.when == "setup" and report.failed)):
            return
        said = dict(report.user_properties)
        if "unwritten" in said:  # the worker could not write this case's row: left for --resume
            self.stop_unwritten(said["unwritten"])
            return
        row = said.get("row")
        if row is None:
            row = self._row_for_dead_worker(report)
            if row is None:
                return
        self.done += 1
        elapsed = time.monotonic() - self.started
        eta = self.eta.seconds(row, elapsed) if self.eta else None
        _print_progress(self.done, self.total, row, elapsed, eta)

    def _row_for_dead_worker(self, report: pytest.TestReport) -> dict[str, Any] | None:
        out = Path(self.config.getoption("--portability-out"))
        results = RunDir(out).results
        for existing in iter_results(results):
            if existing["id"] == strip_pytest_file(report.nodeid):
                return existing  # the worker wrote its row before ending itself
        node = getattr(report, "node", None)
        worker = node.gateway.id if node is not None else "main"
        marker = _start_marker(self.config, worker)
        info = _read_marker(marker)
        marker.unlink(missing_ok=True)
        elapsed = time.time() - info.get("t", time.time())
        said = _since(_log_path(self.config, worker), info.get("offset", 0))
        last_words = _last_words(said)
        timeout = float(self.config.getoption("timeout", 0) or 0)
        timed_out = "+ Timeout +" in said or (timeout > 0 and elapsed >= 0.95 * timeout)
        status = "timeout" if timed_out else "crash"
        reason = (
            f"no result after {elapsed:.0f}s (timeout {timeout:.0f}s)" if timed_out else "worker process died"
        )
        if last_words:
            reason += f"; last output: {last_words}"
        item_id = strip_pytest_file(report.nodeid)
        case = CaseId.parse(item_id)
        row = {
            "id": item_id,
            "kind": "op",
            "cell": case.cell,
            "backend": case.backend,
            "device": case.device,
            "op": case.op,
            "case": case.case,
            "dtype": case.dtype,
            "status": status,
            "reason": reason[-2000:],
            "duration_s": round(elapsed, 3),
            "worker": worker,
            "time": time.time(),
        }
        try:
            _writer(self.config).append(row)
        except ResultsUnwritable as exc:
            self.stop_unwritten(str(exc))
            return None
        except StaleRun:  # this session was orphaned by an earlier run of the directory: end quietly
            os._exit(1)
        return row

    def stop_unwritten(self, why: str) -> None:
        """A row cannot be written: stop the session (xdist's own stop), exit with EXIT_UNWRITABLE."""
        self.unwritten = why
        dsession = self.config.pluginmanager.getplugin("dsession")
        if dsession is not None and not dsession.shouldstop:
            dsession.shouldstop = f"results not written: {why}"

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.unwritten and not self.is_worker:
            session.exitstatus = EXIT_UNWRITABLE


def _since(log: Path, offset: int) -> str:
    """What a worker wrote to its log since its case started."""
    if not log.exists():
        return ""
    with log.open("rb") as fh:
        fh.seek(offset)
        return fh.read().decode("utf-8", "replace")


# Lines of faulthandler's and pytest-timeout's thread dumps that carry no words of the case: thread
# headers, stack frames, banners.
_DUMP_LINE = re.compile(r"^(Thread 0x|Current thread 0x|File |Stack of |[~+]{5})|^\s")


def _last_words(text: str, max_lines: int = 8) -> str:
    """The dead worker's last words: stack dumps dropped (faulthandler and pytest-timeout dump every
    thread), so what remains is what the case and the runtime said (the signal, the error)."""
    lines = [
        ln.strip()
        for ln in text.splitlines()
        if ln.strip() and not ln.startswith("--- case ") and not _DUMP_LINE.match(ln)
    ]
    return " | ".join(lines[-max_lines:])[-1500:]


class _BytesEta:
    """Time left, weighing each case by its input bytes: cost ~ (1 + bytes) ** k with k fitted on the
    cases done so far (log-log least squares) but never below `MIN_EXPONENT`. Counting cases instead
    said "eta 201s" for the last 12 minutes of a CPU sweep whose heavy bf16 GEMMs came last."""

    # On this repository's 2-core CPU box (a quick-profile torch@cpu sweep, 486 cases from 4 B to 335 MB
    # of input) k = 0.3-0.4 kept the estimate within about 40% of the real time left from the 100th case
    # on, where counting cases said 20 s with 200 s left; the small cases that come first fit a flatter k.
    MIN_EXPONENT = 0.35

    def __init__(self, config: pytest.Config) -> None:
        out = config.getoption("--portability-out")
        cell = config.getoption("--portability-cell")
        try:
            cases = json.loads(RunDir(Path(out)).cells_plan.read_text())["cases"]
            self.left = {
                c["id"]: float(c.get("input_bytes") or 0) for c in cases if not cell or c["cell"] == cell
            }
        except (OSError, ValueError, KeyError, TypeError):
            self.left = {}
        self.done: list[tuple[float, float]] = []  # (input bytes, seconds) of finished cases

    def seconds(self, row: dict[str, Any], elapsed: float) -> float | None:
        size = self.left.pop(str(row.get("id")), None)
        duration = row.get("duration_s")
        if size is not None and isinstance(duration, (int, float)):
            self.done.append((size, float(duration)))
        if not self.left:
            return 0.0
        if len(self.done) < 10:
            return None
        k = max(self.MIN_EXPONENT, _log_log_slope(self.done))
        spent = sum((1 + b) ** k for b, _ in self.done)
        return elapsed * sum((1 + b) ** k for b in self.left.values()) / spent


def _log_log_slope(points: list[tuple[float, float]]) -> float:
    """The least-squares slope of log(seconds) over log(1 + bytes)."""
    xs = [math.log1p(b) for b, _ in points]
    ys = [math.log(max(t, 1e-4)) for _, t in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0


def _print_progress(
    done: int, total: int, row: dict[str, Any], elapsed: float, eta_s: float | None = None
) -> None:
    width = 24
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    status = row.get("status", "?")
    extra = ""
    if row.get("latency_ms") is not None:
        extra = f" {row['latency_ms']:.3f}ms"
        if row.get("speedup") and str(row.get("backend")) != baseline_name():
            extra += f" x{row['speedup']:.2f}"
    # Workers start on the heaviest cases (schedule.py) and spend their first seconds importing, so an
    # extrapolation from the first rows is far off (an H100 sweep said 5,592 s at 12 of 3,709 cases; it
    # took 160 s): no figure before 5 % of the cases (at least 10) are done.
    if eta_s is not None and done >= min(total, max(10, total // 20)):
        eta = f"eta {eta_s:.0f}s"
    else:
        eta = "eta after the first cases"
    names = " ".join(visible(row.get(k), 80) for k in ("cell", "op"))  # no escape codes on the terminal
    sys.stderr.write(
        f"[{bar}] {done}/{total} {names} [{visible(row.get('case'), 80)}] "
        f"{row.get('dtype')}: {status}{extra}  ({eta})\n"
    )
    sys.stderr.flush()
