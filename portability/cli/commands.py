"""The `portability` subcommands other than `run`: list, scorecard, coverage, conformance, new-adapter,
report, ci-matrix, merge and diff. Each takes the parsed arguments and returns the exit code; a bad flag or
path raises `UsageError`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from portability.cli.common import (
    UsageError,
    check_nonempty_plan,
    load_config,
    parse_filters,
    split_csv,
    writable_dir,
    writable_file,
)
from portability.results.rundir import RunDir

if TYPE_CHECKING:
    from portability.ci.merge import MergeReport


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
    filters = parse_filters(args, config)
    plan = build_plan(config, filters, profile=args.profile or config.profile)
    check_nonempty_plan(plan, filters, config)
    from tabulate import tabulate

    from portability.scorecard.safe_text import visible

    rows = [  # adapter-supplied text reaches the terminal: no escape codes, one line each
        [
            visible(c.id),
            visible(c.adapter),
            c.status,
            visible(c.device_name),
            ",".join(c.dtypes),
            n,
            visible(c.reason),
        ]
        for c in plan.cells
        for n in [len(plan.cases_of(c))]
    ]
    print(tabulate(rows, headers=["cell", "adapter", "state", "device", "dtypes", "cases", "reason"]))
    sys.stderr.write(
        f"profile {plan.profile} (--profile quick|full chooses; see portability/plan/profile.py)\n"
    )
    return 0


def cmd_scorecard(args: argparse.Namespace) -> int:
    from portability.scorecard.write import write_scorecard

    results = Path(args.results)
    if not results.exists():
        raise UsageError(f"{results}: no such file or directory, expected a results.jsonl or a run directory")
    _require_results(results)
    out = (
        writable_dir("--out", Path(args.out))
        if args.out
        else writable_dir("results", RunDir.of(results).path)
    )
    paths = write_scorecard(results, out)
    print(paths["markdown"].read_text())
    return 0


def _require_results(path: Path) -> None:
    """`path` (a run directory or a .jsonl file) holds at least one result row: anything else would give
    an empty scorecard that looks like a run of nothing."""
    from portability.results.store import iter_results

    file = RunDir(path).results if path.is_dir() else path
    if not file.is_file():
        raise UsageError(f"{path}: no results.jsonl, expected a run directory or a results.jsonl")
    try:
        has_row = any(isinstance(row, dict) and "id" in row for row in iter_results(file, quiet=True))
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"{file}: unreadable ({exc}), expected a results.jsonl of `portability run`"
        ) from None
    if not has_row:
        raise UsageError(f"{file}: no result row, expected a results.jsonl written by `portability run`")


def cmd_coverage(args: argparse.Namespace) -> int:
    import json

    from portability.flaggems.coverage import measure, to_json
    from portability.flaggems.package import FlagGemsUnavailable
    from portability.flaggems.source import label

    if args.backend != "flaggems":
        raise UsageError(f"--backend: coverage is measured for 'flaggems', not '{args.backend}'")
    try:
        cov = measure()
    except FlagGemsUnavailable as exc:
        raise UsageError(
            f"{exc}: install flag-gems (pip install --no-deps flag-gems) to measure coverage"
        ) from None
    data = to_json(cov)
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    share = data["covered"] / data["registered"] if data["registered"] else 0
    print(
        f"FlagGems {label(data['flag_gems'])} registers {data['registered']} aten overloads; "
        f"the catalog exercises {data['covered']} "
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


def cmd_vendors(args: argparse.Namespace) -> int:
    import json

    from portability.flaggems.package import FlagGemsUnavailable
    from portability.flaggems.vendors import VLLM_FL_CONFIG_DIR, markdown, read_declared_support, to_json

    tree = Path(args.vllm_fl) if args.vllm_fl else None
    if (
        tree is not None
        and not any((tree / VLLM_FL_CONFIG_DIR).glob("*.yaml"))
        and not any(tree.glob("*.yaml"))
    ):
        raise UsageError(
            f"--vllm-fl: {tree} has no {VLLM_FL_CONFIG_DIR}/*.yaml, expected a vllm-plugin-FL tree"
        )
    try:
        support = read_declared_support(vllm_fl=tree)
    except FlagGemsUnavailable as exc:
        raise UsageError(f"{exc}: install flag-gems to read what its vendor backends declare") from None
    if args.json:
        print(json.dumps(to_json(support), indent=1))
    else:
        print("\n".join(["## Declared support per vendor", "", *markdown(support)]))
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
    if not run_dir.is_dir():
        raise UsageError(f"{run_dir}: not a directory, expected a run directory")
    _require_results(run_dir)
    trend = Path(args.trend) if args.trend else None
    if trend is not None and not trend.is_file():
        raise UsageError(
            f"--trend: {trend} is {'a directory' if trend.is_dir() else 'missing'}, expected a trend file"
        )
    target = writable_file("--out", Path(args.out or RunDir(run_dir).report_html()))
    try:
        out = write_report(run_dir, target, trend)
    except ImportError as exc:
        raise UsageError(
            f"{exc}: the report needs matplotlib (pip install 'flagos-portability[report]')"
        ) from None
    print(out)
    return 0


def cmd_ci_matrix(args: argparse.Namespace) -> int:
    import json

    from portability.ci.jobs import ci_matrix, parse_runner_labels

    cells = [] if args.cells.strip() == "all" else list(split_csv(args.cells))
    try:
        runners = parse_runner_labels(args.runners)
    except ValueError as exc:
        raise UsageError(f"--runners: {exc}") from None
    try:
        jobs = ci_matrix(load_config(args.matrix), cells, runners)
    except ValueError as exc:
        raise UsageError(f"--cells: {exc}") from None
    print(json.dumps(jobs))
    return 0


def cmd_changed_ops(args: argparse.Namespace) -> int:
    from portability.catalog import load_catalog
    from portability.ci.changed import changed_in_git

    source = Path(args.source)
    if not (source / ".git").exists():
        raise UsageError(
            f"--source {source}: not a git checkout, expected the pull request's FlagGems checkout"
        )
    try:
        selection = changed_in_git(source, args.base, load_catalog)
    except ValueError as exc:
        raise UsageError(f"--base: {exc}") from None
    sys.stderr.write(f"operators: {selection.reason}\n")
    for module, path in selection.unexercised.items():
        sys.stderr.write(f"  {module} ({path}): no catalog spec exercises it\n")
    print(selection.ops_argument())
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from portability.ci.merge import merge
    from portability.scorecard.write import write_scorecard

    expected = list(split_csv(args.expected_cells))
    bad = [c for c in expected if c.count("@") != 1 or c.startswith("@") or c.endswith("@")]
    if bad:
        raise UsageError(
            f"--expected-cells: {', '.join(bad)}, expected backend@device cells (e.g. flaggems@cuda)"
        )
    if not args.shards and not expected:
        raise UsageError("no shard to merge, expected run directories (or --expected-cells)")
    shards = [Path(s) for s in args.shards]
    for shard in shards:
        if not RunDir(shard).results.exists() and not (shard.is_file() and shard.suffix == ".jsonl"):
            raise UsageError(f"{shard}: no results.jsonl, expected a run directory or a results.jsonl")
    out = writable_dir("--out", Path(args.out))
    report = merge(shards, out, expected)
    write_scorecard(out)
    _report_merge(report, len(shards), out)
    return 0


def _report_merge(report: MergeReport, n_shards: int, out: Path) -> None:
    sys.stderr.write(
        f"merged {n_shards} shard(s): {report.rows} rows, {len(report.duplicates)} duplicate(s), "
        f"{len(report.conflicts)} conflict(s) (listed in {RunDir(out).merge_report})\n"
    )
    for conflict in report.conflicts[:20]:
        sys.stderr.write(f"  conflict: {conflict}\n")
    if report.missing_cells:
        sys.stderr.write(
            f"{len(report.missing_cells)} expected cell(s) had no shard, reported not run: "
            f"{', '.join(report.missing_cells)}\n"
        )
    for shard in report.without_run_info:
        sys.stderr.write(
            f"{shard}: no run.json (the run was cut short): its unrun cases are reported not run\n"
        )
    for shard in report.without_plan:
        sys.stderr.write(f"{shard}: no plan.json: cases it planned but never ran cannot be named\n")
    for pkg, by_version in report.version_mismatches.items():
        found = "; ".join(f"{version} in {', '.join(shards)}" for version, shards in by_version.items())
        sys.stderr.write(f"shards ran different versions of {pkg}: {found}\n")


def cmd_diff(args: argparse.Namespace) -> int:
    from portability.ci.diff import diff_runs
    from portability.results.store import read_results

    for path in (args.base, args.new):
        if not Path(path).exists():
            raise UsageError(f"{path}: no such run directory or results file")
        if not any(r["kind"] == "op" for r in read_results(Path(path))):
            raise UsageError(f"{path}: no operator results to compare, expected a run with operator rows")
    if args.out:
        writable_file("--out", Path(args.out))
    result, markdown = diff_runs(Path(args.base), Path(args.new))
    if args.out:
        Path(args.out).write_text(markdown)
    print(markdown)
    return 1 if (args.fail_on_regression and result.regressions) else 0
