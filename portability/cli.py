"""`portability` command line: run, list, scorecard."""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from portability.config import ConfigError, MatrixConfig

EXIT_USAGE = 2


def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _load(matrix: str) -> MatrixConfig:
    from portability.catalog import all_tags, load_catalog
    from portability.config import load_matrix
    from portability.registry import is_adapter_reference

    validate_serving = None
    try:
        from portability.serving.settings import validate_serving
    except ImportError:
        pass
    return load_matrix(
        matrix, is_adapter_reference, tuple(load_catalog()), tuple(sorted(all_tags())), validate_serving
    )


def _filters(args: argparse.Namespace, config: MatrixConfig) -> Any:
    from portability.catalog import all_tags, load_catalog
    from portability.plan import Filters
    from portability.spec import DTYPES

    f = Filters(_csv(args.backends), _csv(args.devices), _csv(args.ops), _csv(args.dtypes), _csv(args.tags))
    checks = [
        ("--backends", f.backends, tuple(config.backends)),
        ("--ops", f.ops, tuple(load_catalog())),
        ("--dtypes", f.dtypes, tuple(DTYPES)),
        ("--tags", f.tags, tuple(sorted(all_tags()))),
    ]
    for flag, given, allowed in checks:
        for item in given:
            if item not in allowed:
                raise UsageError(f"{flag}: unknown value '{item}', expected one of {', '.join(allowed)}")
    return f


class UsageError(Exception):
    pass


def cmd_run(args: argparse.Namespace) -> int:
    from portability.plan import build_plan
    from portability.runner import run_plan, write_run_info
    from portability.scorecard import write_scorecard

    started = time.time()
    config = _load(args.matrix)
    _override_serving(args, config)
    plan = build_plan(config, _filters(args, config))
    if args.serving_only:  # the cells still get their rows (and reasons); no operator case runs
        plan.cases, plan.refused = [], []
    if args.workers is not None:
        plan.workers = args.workers
    if args.case_timeout is not None:
        plan.timeout_s = args.case_timeout
    out = Path(args.out)
    if args.resume and not (out / "results.jsonl").exists():
        raise UsageError(
            f"--resume: {out}/results.jsonl does not exist, expected the directory of an earlier run"
        )
    _print_cells(plan.cells)
    out.mkdir(parents=True, exist_ok=True)
    if any(c.adapter == "flaggems" for c in plan.cells):
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
    elif args.serving_only:
        sys.stderr.write(f"--serving-only: {config.path} has no serving block, nothing was served\n")
    write_run_info(out, sys.argv[1:], config.path, started)
    paths = write_scorecard(out)
    from portability.report import TREND_FILE, append_trend

    append_trend(out, Path(args.trend) if args.trend else out.resolve().parent / TREND_FILE)
    sys.stderr.write(f"scorecard: {paths['markdown']} {paths['json']} {paths['junit']}\n")
    return 128 + 15 if stopped else 0  # 143: ended by SIGTERM, as a shell reports it


def _write_coverage(out: Path) -> None:
    """coverage.json beside the results, so the scorecard can say covered/registered for FlagGems."""
    import json

    from portability.coverage import measure, to_json

    try:
        (out / "coverage.json").write_text(json.dumps(to_json(measure()), indent=1))
    except ModuleNotFoundError:
        pass  # flag_gems not installed: its cells already say so


def _override_serving(args: argparse.Namespace, config: MatrixConfig) -> None:
    """--engines / --model / --cuda-graphs / --serving-only change the matrix's serving block, checked
    like the block itself (one line naming the flag and what is allowed, exit 2)."""
    if args.no_serving and args.serving_only:
        raise UsageError("--no-serving and --serving-only exclude each other, expected at most one")
    wanted = {
        "engines": list(_csv(args.engines)) or None,
        "model": args.model,
        "cuda_graphs": None if args.cuda_graphs is None else args.cuda_graphs == "on",
    }
    wanted = {k: v for k, v in wanted.items() if v is not None}
    if not wanted:
        return
    from portability.serving.settings import validate_serving

    if args.model and not args.model.startswith("/") and Path(args.model).is_dir():
        wanted["model"] = str(Path(args.model).resolve())  # a relative path to real weights
    block = {**(config.serving_block or {"engines": ["vllm"]}), **wanted}
    if "cuda_graphs" in wanted:
        block.pop("enforce_eager", None)

    def error(path: tuple, what: str, expected: str) -> None:
        flag = {"engines": "--engines", "model": "--model", "cuda_graphs": "--cuda-graphs"}.get(
            str(path[0]) if path else "", "serving"
        )
        raise UsageError(f"{flag}: {what}, expected {expected}")

    config.serving = validate_serving(block, error)
    config.serving_block = block


def _run_serving(config: MatrixConfig, plan: Any, out: Path) -> None:
    """The serving block's engines crossed with the plan's cells of the serving backends."""
    from portability.results import RESULTS_FILE, ResultWriter
    from portability.serving import run_serving

    cells = [
        (engine, c.backend, c.device, c.status, c.reason)
        for engine in config.serving.engines
        for c in plan.cells
        if c.backend in config.serving.backends
    ]
    run_serving(cells, config.serving, out, ResultWriter(out / RESULTS_FILE))


def _print_cells(cells: list[Any]) -> None:
    from tabulate import tabulate

    rows = [[c.id, c.status, c.device_name or "", (c.reason or "")[:110]] for c in cells]
    sys.stderr.write(tabulate(rows, headers=["cell", "state", "device", "reason"]) + "\n")


def cmd_list(args: argparse.Namespace) -> int:
    from portability.catalog import load_catalog
    from portability.plan import build_plan

    config = _load(args.matrix)
    if args.what == "ops":
        from tabulate import tabulate

        rows = [
            [s.name, len(s.cases), ",".join(s.dtypes), ",".join(s.tags), ",".join(s.flaggems)]
            for s in load_catalog().values()
        ]
        print(tabulate(rows, headers=["operator", "cases", "dtypes", "tags", "flaggems"]))
        return 0
    plan = build_plan(config, _filters(args, config))
    from tabulate import tabulate

    rows = [
        [c.id, c.adapter, c.status, c.device_name, ",".join(c.dtypes), len(plan.cases_of(c)), c.reason]
        for c in plan.cells
    ]
    print(tabulate(rows, headers=["cell", "adapter", "state", "device", "dtypes", "cases", "reason"]))
    return 0


def cmd_scorecard(args: argparse.Namespace) -> int:
    from portability.scorecard import write_scorecard

    results = Path(args.results)
    if not results.exists():
        raise UsageError(f"{results}: no such file or directory, expected a results.jsonl or a run directory")
    paths = write_scorecard(results, Path(args.out) if args.out else None)
    print(paths["markdown"].read_text())
    return 0


def cmd_coverage(args: argparse.Namespace) -> int:
    import json

    from portability.coverage import measure, to_json

    if args.backend != "flaggems":
        raise UsageError(f"--backend: coverage is measured for 'flaggems', not '{args.backend}'")
    try:
        cov = measure()
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"{exc}: install flag-gems (pip install --no-deps flag-gems) to measure coverage"
        ) from None
    data = to_json(cov)
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    share = data["covered"] / data["registered"] if data["registered"] else 0
    print(
        f"FlagGems registers {data['registered']} aten overloads; the catalog exercises {data['covered']} "
        f"({share:.0%}), measured by dispatching each spec on the CPU."
    )
    print(f"Specs routed to FlagGems functions outside aten: {', '.join(data['fused_specs']) or 'none'}")
    absent = set(data["absent_from_torch"])
    print("Uncovered: " + (", ".join(k for k in data["uncovered"] if k not in absent) or "none"))
    print(
        f"Uncovered because torch {data['torch']} has no such aten overload (nothing dispatches to them): "
        + (", ".join(sorted(absent)) or "none")
    )
    if data["broken_specs"]:
        print("Specs that raised on the CPU (they cover nothing): " + ", ".join(data["broken_specs"]))
    return 0


def cmd_conformance(args: argparse.Namespace) -> int:
    import subprocess

    import portability.conformance as kit

    cmd = [
        sys.executable,
        "-m",
        "pytest",
        kit.__file__,
        "-p",
        "portability.conformance",
        "-p",
        "no:cacheprovider",
        f"--conformance-backend={args.backend}",
        f"--conformance-device={args.device}",
        "-v",
        "--rootdir",
        str(Path(kit.__file__).parent),
        "-c",
        os.devnull,
    ]
    return subprocess.run(cmd, check=False).returncode


def cmd_new_adapter(args: argparse.Namespace) -> int:
    from portability.scaffold import new_adapter

    try:
        root = new_adapter(args.name, Path(args.out))
    except (ValueError, FileExistsError) as exc:
        raise UsageError(str(exc)) from None
    print(f"wrote {root}: pip install -e {root} && portability conformance --backend {args.name}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from portability.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "results.jsonl").exists():
        raise UsageError(f"{run_dir}: no results.jsonl, expected a run directory")
    try:
        out = write_report(
            run_dir, Path(args.out or run_dir / "report.html"), Path(args.trend) if args.trend else None
        )
    except ImportError as exc:
        raise UsageError(
            f"{exc}: the report needs matplotlib (pip install 'flagos-portability[report]')"
        ) from None
    print(out)
    return 0


def cmd_ci_matrix(args: argparse.Namespace) -> int:
    import json

    from portability.shards import ci_matrix

    print(json.dumps(ci_matrix(_load(args.matrix))))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from portability.scorecard import write_scorecard
    from portability.shards import merge

    shards = [Path(s) for s in args.shards]
    for shard in shards:
        if not (shard / "results.jsonl").exists() and not (shard.is_file() and shard.suffix == ".jsonl"):
            raise UsageError(f"{shard}: no results.jsonl, expected a run directory or a results.jsonl")
    out = Path(args.out)
    report = merge(shards, out)
    write_scorecard(out)
    sys.stderr.write(
        f"merged {len(shards)} shard(s): {report.rows} rows, {len(report.duplicates)} duplicate(s), "
        f"{len(report.conflicts)} conflict(s) (listed in {out / 'merge.json'})\n"
    )
    for conflict in report.conflicts[:20]:
        sys.stderr.write(f"  conflict: {conflict}\n")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from portability.diff import diff_runs

    for path in (args.base, args.new):
        if not Path(path).exists():
            raise UsageError(f"{path}: no such run directory or results file")
    result, markdown = diff_runs(Path(args.base), Path(args.new))
    if args.out:
        Path(args.out).write_text(markdown)
    print(markdown)
    return 1 if (args.fail_on_regression and result.regressions) else 0


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--matrix", default="matrix.yaml", help="matrix file (default: ./matrix.yaml)")
    p.add_argument("--backends", default="", help="comma-separated backend names from the matrix")
    p.add_argument("--devices", default="", help="comma-separated devices or device types (cpu,cuda,...)")
    p.add_argument("--ops", default="", help="comma-separated operator names")
    p.add_argument("--dtypes", default="", help="comma-separated dtypes (fp32,fp16,bf16,...)")
    p.add_argument("--tags", default="", help="only operators with one of these tags")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="portability", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the matrix and write results + scorecard into --out")
    _add_filters(run)
    run.add_argument("--out", required=True, help="run directory")
    run.add_argument("--resume", action="store_true", help="finish an interrupted run in --out")
    run.add_argument("--no-serving", action="store_true", help="operator cases only")
    run.add_argument("--serving-only", action="store_true", help="Qwen3 serving only, no operator cases")
    run.add_argument(
        "--engines", default="", help="serving engines (vllm,vllm-fl,hf), overriding matrix.yaml"
    )
    run.add_argument(
        "--model",
        default=None,
        help="served model: a shipped config (qwen3-tiny, qwen3-4b) or a directory with real weights",
    )
    run.add_argument(
        "--cuda-graphs",
        default=None,
        choices=["on", "off"],
        help="vLLM CUDA graphs on (enforce_eager false) or off, overriding matrix.yaml",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        help="pytest-xdist workers per cell, overriding perf.workers (e.g. 8 to compile a cold GPU cache "
        "in parallel; timings then share the device)",
    )
    run.add_argument(
        "--case-timeout",
        type=_positive_seconds,
        default=None,
        metavar="S",
        help="seconds one case may take, compile and autotune included, overriding perf.timeout_s (a warm "
        "cache needs far less than a cold one: a case still running then is reported as a timeout)",
    )
    run.add_argument(
        "--trend", default=None, help="append this run's summary here (default: OUT/../trend.jsonl)"
    )
    run.set_defaults(func=cmd_run)
    lst = sub.add_parser("list", help="show the cells (and why any is unavailable), or the operators")
    _add_filters(lst)
    lst.add_argument("what", nargs="?", choices=["cells", "ops"], default="cells")
    lst.set_defaults(func=cmd_list)
    sc = sub.add_parser("scorecard", help="render scorecard.md/.json/junit.xml from a results file")
    sc.add_argument("results", help="results.jsonl or a run directory")
    sc.add_argument("--out", default=None, help="where to write (default: beside the results)")
    sc.set_defaults(func=cmd_scorecard)
    con = sub.add_parser("conformance", help="check that an adapter keeps the BackendAdapter contract")
    con.add_argument("--backend", required=True, help="adapter name, or module:Class / file.py:Class")
    con.add_argument("--device", default="cpu")
    con.set_defaults(func=cmd_conformance)
    new = sub.add_parser("new-adapter", help="write a package skeleton for a new backend adapter")
    new.add_argument("name")
    new.add_argument("--out", default=".")
    new.set_defaults(func=cmd_new_adapter)
    rep = sub.add_parser("report", help="a self-contained HTML report (grid, heatmap, trend) of a run")
    rep.add_argument("run_dir")
    rep.add_argument("--trend", default=None, help="trend file (default: none)")
    rep.add_argument("--out", default=None, help="default: RUN_DIR/report.html")
    rep.set_defaults(func=cmd_report)
    cim = sub.add_parser("ci-matrix", help="the cells as JSON for a GitHub Actions matrix (fromJson)")
    cim.add_argument("--matrix", default="matrix.yaml")
    cim.set_defaults(func=cmd_ci_matrix)
    mrg = sub.add_parser("merge", help="merge run directories from several machines into one scorecard")
    mrg.add_argument("shards", nargs="+", help="run directories (or results.jsonl files)")
    mrg.add_argument("--out", required=True)
    mrg.set_defaults(func=cmd_merge)
    dif = sub.add_parser(
        "diff", help="regressions and improvements of NEW against BASE (PR-comment Markdown)"
    )
    dif.add_argument("base")
    dif.add_argument("new")
    dif.add_argument("--out", default=None, help="also write the Markdown here")
    dif.add_argument("--fail-on-regression", action="store_true", help="exit 1 when there is a regression")
    dif.set_defaults(func=cmd_diff)
    cov = sub.add_parser("coverage", help="which FlagGems-registered aten overloads the catalog exercises")
    cov.add_argument("--backend", default="flaggems")
    cov.add_argument("--json", action="store_true", help="machine-readable output")
    cov.set_defaults(func=cmd_coverage)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_USAGE
    except UsageError as exc:
        sys.stderr.write(f"portability: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("portability: interrupted; finish with `portability run --resume --out DIR`\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
