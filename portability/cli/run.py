"""`portability run`: plan the matrix (with the command line's filters and overrides), run its operator
cases, serve Qwen3 on the serving cells, then write the run's scorecard and append to the trend file."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from portability.cli.common import (
    UsageError,
    check_nonempty_plan,
    load_config,
    parse_filters,
    split_csv,
    writable_dir,
    writable_file,
)
from portability.matrix.config import MatrixConfig
from portability.results.lock import RunDirBusy, RunLock
from portability.results.rundir import RunDir
from portability.results.store import ResultWriter

if TYPE_CHECKING:
    from portability.plan.cells import Cell

# `portability run`'s exit codes (README, docs/statuses.md). Bad input is EXIT_USAGE (2), from cli/__init__.
EXIT_ALL_PASS = 0  # nothing at or above --fail-on
EXIT_FAILURES = 1  # cases (or cells, or serving rows) at or above --fail-on
EXIT_INFRA = 3  # the harness or the machine failed (infra rows: a device lost, a cell's pytest session died)
FAIL_ON = ("fail", "error", "any", "never")


def cmd_run(args: argparse.Namespace) -> int:
    from portability.plan.cells import build_plan
    from portability.run.session import PlanMismatch

    started = time.time()
    config = load_config(args.matrix)
    _override_serving(args, config)
    if args.repeat is not None:
        config.perf.repeat = args.repeat
    out = Path(args.out)
    if args.resume and not RunDir(out).results.exists():
        raise UsageError(
            f"--resume: {out}/results.jsonl does not exist, expected the directory of an earlier run"
        )
    writable_dir("--out", out, create=False)
    trend = writable_file("--trend", Path(args.trend), create=False) if args.trend else None
    filters = parse_filters(args, config)
    plan = build_plan(config, filters, profile=args.profile or config.profile)
    check_nonempty_plan(plan, filters, config, serving_only=args.serving_only)
    if args.serving_only or args.engines:
        _check_something_served(args, config, plan.cells)
    writable_dir("--out", out)  # after every check of the arguments: a refused run leaves nothing behind
    trend = writable_file("--trend", trend) if trend else _default_trend(out)
    if plan.profile == "quick" and not args.serving_only:
        sys.stderr.write(QUICK_NOTE)
    if args.serving_only:  # the cells still get their rows (and reasons); no operator case runs
        plan.cases, plan.refused = [], []
    if args.workers is not None:
        plan.workers = args.workers
    if args.case_timeout is not None:
        plan.timeout_s = args.case_timeout
    _print_cells(plan.cells)
    try:
        lock = RunLock.acquire(out)
    except RunDirBusy as exc:
        raise UsageError(str(exc)) from None
    try:
        return _run_locked(args, config, plan, out, lock, started, trend)
    except PlanMismatch as exc:
        raise UsageError(str(exc)) from None
    finally:
        lock.release()


def _run_locked(
    args: argparse.Namespace,
    config: MatrixConfig,
    plan: Any,
    out: Path,
    lock: RunLock,
    started: float,
    trend: Path | None,
) -> int:
    """The run proper, while this process holds the directory: cases, serving, then the scorecard (also
    after SIGTERM / SIGINT / SIGHUP, which stop every process of the run and keep every row)."""
    from portability.run.proctree import RunInterrupted, stop_signals_raise
    from portability.run.session import run_plan, write_run_info
    from portability.scorecard.write import write_scorecard

    stopped: str | None = None
    with stop_signals_raise():
        try:
            if not args.resume:  # a fresh run into an old run's directory must not show its coverage
                RunDir(out).coverage.unlink(missing_ok=True)
            if not args.serving_only and any(c.adapter == "flaggems" for c in plan.cells):
                _write_coverage(out)  # first: a run cut short still says what the catalog covers
            _write_declared_support(out, [c for c in plan.cells if c.adapter == "flaggems"])
            fingerprint = run_plan(plan, out, lock, resume=args.resume, reruns=args.reruns)
            if config.serving and not args.no_serving:
                stopped = _serve(config, plan, out, lock, fingerprint)
        except RunInterrupted as exc:  # the rows so far are on disk: still write the scorecard
            stopped = exc.name
            sys.stderr.write(f"portability: interrupted by {exc.name}; writing the scorecard of what ran\n")
    # the command as it ran: an automatic profile is written out, so the scorecard's header says it
    argv = sys.argv[1:] + (["--profile", plan.profile] if args.profile != plan.profile else [])
    write_run_info(out, argv, config.path, started, stopped)
    paths = write_scorecard(out)
    from portability.scorecard.html import append_trend

    if trend is not None:
        append_trend(out, trend)
    sys.stderr.write(f"scorecard: {paths['markdown']} {paths['json']} {paths['junit']}\n")
    if stopped:
        sys.stderr.write(f"portability: finish with `portability run --resume --out {out}`\n")
        return 128 + signal.Signals[stopped].value  # as a shell reports a death by that signal
    code = run_exit_code(out, args.fail_on)
    sys.stderr.write(f"exit code {code} (--fail-on {args.fail_on}; 0 pass, 1 failures, 3 infrastructure)\n")
    return code


def run_exit_code(out: Path, fail_on: str) -> int:
    """0, EXIT_FAILURES or EXIT_INFRA for a finished run, from the same counts as the verdict line.

    --fail-on fail: wrong results (`fail`, `flaky`) only; error (default): any failing status, a cell that
    could not start, a failing serving row; any: also every other case that did not pass (fallback,
    unsupported, skip, infra, not run); never: always 0. Failures win over infrastructure (`infra` rows,
    among them the cases of a cell whose pytest session died)."""
    from portability.results.status import FAILING
    from portability.results.store import read_results
    from portability.scorecard.markdown import verdict_counts
    from portability.scorecard.summary import summarize

    if fail_on == "never":
        return EXIT_ALL_PASS
    run_dir = RunDir(out)
    plan = run_dir.read_json(run_dir.plan)
    data = summarize(read_results(run_dir.results), plan["cases"] if plan else None)
    tally = verdict_counts(data)
    counts = tally["counts"]
    bad_serving = any(r.get("status") in FAILING for r in data.get("serving", []))
    failed = {
        "fail": counts.get("fail", 0) + counts.get("flaky", 0) > 0,
        "error": bool(tally["failing"] or tally["dead"] or bad_serving),
        "any": bool(tally["failing"] or tally["dead"] or bad_serving or tally["not_passing"]),
    }[fail_on]
    if failed:
        return EXIT_FAILURES
    return EXIT_INFRA if counts.get("infra") else EXIT_ALL_PASS


def _serve(config: MatrixConfig, plan: Any, out: Path, lock: RunLock, fingerprint: str) -> str | None:
    """Serve the serving cells; the name of the signal that stopped serving, or None."""
    from portability.serving.runner import ServingStopped

    try:
        _run_serving(config, plan, out, ResultWriter(RunDir(out).results, lock.generation, fingerprint))
    except ServingStopped as exc:  # the serving runner's own SIGTERM handling: its rows are on disk
        sys.stderr.write(f"serving stopped by {exc}: scorecard of what was measured follows\n")
        return str(exc)
    return None


def _default_trend(out: Path) -> Path | None:
    """OUT/../trend.jsonl, or None (with a note) where that cannot be written (e.g. --out /tmp/run)."""
    trend = RunDir(out).default_trend
    try:
        return writable_file("--trend", trend)
    except UsageError:
        sys.stderr.write(
            f"note: {trend} is not writable, no trend line appended (--trend FILE chooses one)\n"
        )
        return None


QUICK_NOTE = (
    "profile quick: one representative case per operator at fp32 (only the Qwen3-path operators on a "
    "backend that compiles every case); the whole catalog: --profile full\n"
)


def _write_coverage(out: Path) -> None:
    """coverage.json beside the results, so the scorecard can say covered/registered for FlagGems."""

    from portability.flaggems.coverage import measure, to_json
    from portability.flaggems.package import FlagGemsUnavailable

    try:
        RunDir(out).write_json(RunDir(out).coverage, to_json(measure()))
    except FlagGemsUnavailable:
        pass  # flag_gems not installed: its cells already say so


def _write_declared_support(out: Path, flaggems_cells: list[Cell]) -> None:
    """declared-support.json: what each vendor backend of the installed FlagGems declares (any host), with
    the vllm-plugin-FL tree a flaggems backend's `options.vllm_fl` names."""
    from portability.flaggems.package import FlagGemsUnavailable
    from portability.flaggems.vendors import read_declared_support, to_json

    if not flaggems_cells:
        return
    tree = next((c.options["vllm_fl"] for c in flaggems_cells if c.options.get("vllm_fl")), None)
    try:
        support = read_declared_support(vllm_fl=Path(tree) if tree else None)
    except FlagGemsUnavailable:
        return  # flag_gems not installed: its cells already say so
    RunDir(out).write_json(RunDir(out).declared_support, to_json(support))


def _override_serving(args: argparse.Namespace, config: MatrixConfig) -> None:
    """--engines / --model / --cuda-graphs / --flaggems-exclude / --allow-mismatched-pair / --serving-only
    change the matrix's serving block, checked like the block itself (one line naming the flag and what
    is allowed, exit 2)."""
    if args.no_serving and args.serving_only:
        raise UsageError("--no-serving and --serving-only exclude each other, expected at most one")
    for flag, value in (("--engines", args.engines), ("--flaggems-exclude", args.flaggems_exclude)):
        if value is not None and not split_csv(value):
            raise UsageError(
                f"{flag}: empty, expected comma-separated names (leave the flag out for the matrix's)"
            )
    wanted = {
        "engines": list(split_csv(args.engines)) or None,
        "model": args.model,
        "cuda_graphs": None if args.cuda_graphs is None else args.cuda_graphs == "on",
        "flaggems_exclude": list(split_csv(args.flaggems_exclude)) or None,
        "allow_mismatched_pair": True if args.allow_mismatched_pair else None,
    }
    wanted = {k: v for k, v in wanted.items() if v is not None}
    if args.serving_only and not config.serving_block:
        raise UsageError(
            f"--serving-only: {config.path} has no serving block, expected a matrix with `serving:`"
        )
    if not wanted:
        return
    flags = " ".join(FLAG_OF_KEY[k] for k in wanted)
    if args.no_serving:
        raise UsageError(f"{flags}: nothing is served with --no-serving, expected one of the two")
    if not config.serving_block:
        raise UsageError(f"{flags}: {config.path} has no serving block, expected a matrix with `serving:`")
    from portability.serving.settings import validate_serving

    if args.model and not args.model.startswith("/") and Path(args.model).is_dir():
        wanted["model"] = str(Path(args.model).resolve())  # a relative path to real weights
    block = {**config.serving_block, **wanted}
    if "cuda_graphs" in wanted:
        block.pop("enforce_eager", None)

    def error(path: tuple, what: str, expected: str) -> NoReturn:
        raise UsageError(
            f"{FLAG_OF_KEY.get(str(path[0]) if path else '', 'serving')}: {what}, expected {expected}"
        )

    config.serving = validate_serving(block, error)
    config.serving_block = block


FLAG_OF_KEY = {
    "engines": "--engines",
    "model": "--model",
    "cuda_graphs": "--cuda-graphs",
    "flaggems_exclude": "--flaggems-exclude",
    "allow_mismatched_pair": "--allow-mismatched-pair",
}


def _check_something_served(args: argparse.Namespace, config: MatrixConfig, cells: list[Any]) -> None:
    """--serving-only / --engines on a selection without a cell of a serving backend serve nothing."""
    if config.serving and any(c.backend in config.serving.backends for c in cells):
        return
    flag = "--serving-only" if args.serving_only else "--engines"
    backends = ", ".join(config.serving.backends) if config.serving else "none"
    raise UsageError(
        f"{flag}: no selected cell ({', '.join(c.id for c in cells)}) is of a serving backend "
        f"(serving.backends: {backends}), expected --backends naming one of them"
    )


def _run_serving(config: MatrixConfig, plan: Any, out: Path, writer: ResultWriter) -> None:
    """The serving block's engines crossed with the plan's cells of the serving backends."""
    from portability.serving.runner import run_serving

    cells = [
        (engine, c.backend, c.device, c.status, c.reason)
        for engine in config.serving.engines
        for c in plan.cells
        if c.backend in config.serving.backends
    ]
    run_serving(cells, config.serving, out, writer)


def _print_cells(cells: list[Any]) -> None:
    from tabulate import tabulate

    from portability.scorecard.safe_text import visible

    # adapter-supplied text reaches the terminal: no escape codes, one line each
    rows = [[visible(c.id), c.status, visible(c.device_name), visible(c.reason, 110)] for c in cells]
    sys.stderr.write(tabulate(rows, headers=["cell", "state", "device", "reason"]) + "\n")
