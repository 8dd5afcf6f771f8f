"""`portability run`: plan the matrix (with the command line's filters and overrides), run its operator
cases, serve Qwen3 on the serving cells, then write the run's scorecard and append to the trend file."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

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
from portability.results.rundir import RunDir


def cmd_run(args: argparse.Namespace) -> int:
    from portability.plan.cells import build_plan
    from portability.run.session import run_plan, write_run_info
    from portability.scorecard.write import write_scorecard

    started = time.time()
    config = load_config(args.matrix)
    _override_serving(args, config)
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
    if not args.resume:  # a fresh run into an old run's directory must not show the old coverage
        RunDir(out).coverage.unlink(missing_ok=True)
    if not args.serving_only and any(c.adapter == "flaggems" for c in plan.cells):
        _write_coverage(out)  # first: a run cut short still says what the catalog covers
    run_plan(plan, out, resume=args.resume)
    stopped = None
    if config.serving and not args.no_serving:
        from portability.serving.runner import ServingStopped

        try:
            _run_serving(config, plan, out)
        except ServingStopped as exc:  # the rows so far are on disk: still write the scorecard
            stopped = exc
            sys.stderr.write(f"serving stopped by {exc}: scorecard of what was measured follows\n")
    # the command as it ran: an automatic profile is written out, so the scorecard's header says it
    argv = sys.argv[1:] + (["--profile", plan.profile] if args.profile != plan.profile else [])
    write_run_info(out, argv, config.path, started)
    paths = write_scorecard(out)
    from portability.scorecard.html import append_trend

    if trend is not None:
        append_trend(out, trend)
    sys.stderr.write(f"scorecard: {paths['markdown']} {paths['json']} {paths['junit']}\n")
    return 128 + 15 if stopped else 0  # 143: ended by SIGTERM, as a shell reports it


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

    from portability.coverage import measure, to_json

    try:
        RunDir(out).write_json(RunDir(out).coverage, to_json(measure()))
    except ModuleNotFoundError:
        pass  # flag_gems not installed: its cells already say so


def _override_serving(args: argparse.Namespace, config: MatrixConfig) -> None:
    """--engines / --model / --cuda-graphs / --flaggems-exclude / --serving-only change the matrix's
    serving block, checked like the block itself (one line naming the flag and what is allowed, exit 2)."""
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


def _run_serving(config: MatrixConfig, plan: Any, out: Path) -> None:
    """The serving block's engines crossed with the plan's cells of the serving backends."""
    from portability.results.store import ResultWriter
    from portability.serving.runner import run_serving

    cells = [
        (engine, c.backend, c.device, c.status, c.reason)
        for engine in config.serving.engines
        for c in plan.cells
        if c.backend in config.serving.backends
    ]
    run_serving(cells, config.serving, out, ResultWriter(RunDir(out).results))


def _print_cells(cells: list[Any]) -> None:
    from tabulate import tabulate

    from portability.scorecard.safe_text import visible

    # adapter-supplied text reaches the terminal: no escape codes, one line each
    rows = [[visible(c.id), c.status, visible(c.device_name), visible(c.reason, 110)] for c in cells]
    sys.stderr.write(tabulate(rows, headers=["cell", "state", "device", "reason"]) + "\n")
