"""The `portability` subcommands other than `run`: list, scorecard, coverage, conformance, new-adapter,
report, ci-matrix, merge and diff. Each takes the parsed arguments and returns the exit code; a bad flag or
path raises `UsageError`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from portability.cli.common import UsageError, load_config, parse_filters
from portability.results.rundir import RunDir


def cmd_list(args: argparse.Namespace) -> int:
    from portability.catalog import load_catalog
    from portability.plan.cells import build_plan

    config = load_config(args.matrix)
    if args.what == "ops":
        from tabulate import tabulate

        rows = [
            [s.name, len(s.cases), ",".join(s.dtypes), ",".join(s.tags), ",".join(s.flaggems)]
            for s in load_catalog().values()
        ]
        print(tabulate(rows, headers=["operator", "cases", "dtypes", "tags", "flaggems"]))
        return 0
    plan = build_plan(config, parse_filters(args, config))
    from tabulate import tabulate

    rows = [
        [c.id, c.adapter, c.status, c.device_name, ",".join(c.dtypes), len(plan.cases_of(c)), c.reason]
        for c in plan.cells
    ]
    print(tabulate(rows, headers=["cell", "adapter", "state", "device", "dtypes", "cases", "reason"]))
    return 0


def cmd_scorecard(args: argparse.Namespace) -> int:
    from portability.scorecard.write import write_scorecard

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
    where = "FlagGems' live registry" if data["registry"] == "live" else "the installed package's table"
    print(f"Registered overloads read from {where}: {data['registry_note']}")
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
        *(["--allow-unavailable"] if args.allow_unavailable else []),
        *(["--allow-unverified-routing"] if args.allow_unverified_routing else []),
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
    from portability.scorecard.html import write_report

    run_dir = Path(args.run_dir)
    if not RunDir(run_dir).results.exists():
        raise UsageError(f"{run_dir}: no results.jsonl, expected a run directory")
    try:
        out = write_report(
            run_dir, Path(args.out or RunDir(run_dir).report_html()), Path(args.trend) if args.trend else None
        )
    except ImportError as exc:
        raise UsageError(
            f"{exc}: the report needs matplotlib (pip install 'flagos-portability[report]')"
        ) from None
    print(out)
    return 0


def cmd_ci_matrix(args: argparse.Namespace) -> int:
    import json

    from portability.ci.merge import ci_matrix

    print(json.dumps(ci_matrix(load_config(args.matrix))))
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from portability.ci.merge import merge
    from portability.scorecard.write import write_scorecard

    shards = [Path(s) for s in args.shards]
    for shard in shards:
        if not RunDir(shard).results.exists() and not (shard.is_file() and shard.suffix == ".jsonl"):
            raise UsageError(f"{shard}: no results.jsonl, expected a run directory or a results.jsonl")
    out = Path(args.out)
    report = merge(shards, out)
    write_scorecard(out)
    sys.stderr.write(
        f"merged {len(shards)} shard(s): {report.rows} rows, {len(report.duplicates)} duplicate(s), "
        f"{len(report.conflicts)} conflict(s) (listed in {RunDir(out).merge_report})\n"
    )
    for conflict in report.conflicts[:20]:
        sys.stderr.write(f"  conflict: {conflict}\n")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from portability.ci.diff import diff_runs

    for path in (args.base, args.new):
        if not Path(path).exists():
            raise UsageError(f"{path}: no such run directory or results file")
    result, markdown = diff_runs(Path(args.base), Path(args.new))
    if args.out:
        Path(args.out).write_text(markdown)
    print(markdown)
    return 1 if (args.fail_on_regression and result.regressions) else 0
