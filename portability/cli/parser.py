"""The `portability` argument parser: one subparser per subcommand, each bound to its implementation
(`args.func`), and the argument types that reject bad numbers as argparse usage errors."""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

from portability.cli.commands import (
    cmd_changed_ops,
    cmd_ci_matrix,
    cmd_conformance,
    cmd_coverage,
    cmd_diff,
    cmd_list,
    cmd_merge,
    cmd_new_adapter,
    cmd_report,
    cmd_scorecard,
    cmd_vendors,
)
from portability.cli.common import EXIT_USAGE
from portability.cli.run import FAIL_ON, cmd_run
from portability.matrix.config import MAX_CASE_TIMEOUT_S, PROFILES

DESCRIPTION = "`portability` command line: run, list, scorecard."


def _add_filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--matrix", default="matrix.yaml", help="matrix file (default: ./matrix.yaml)")
    p.add_argument("--backends", default=None, help="comma-separated backend names from the matrix")
    p.add_argument("--devices", default=None, help="comma-separated devices or device types (cpu,cuda,...)")
    p.add_argument("--ops", default=None, help="comma-separated operator names")
    p.add_argument("--dtypes", default=None, help="comma-separated dtypes (fp32,fp16,bf16,...)")
    p.add_argument("--tags", default=None, help="only operators with one of these tags")
    p.add_argument(
        "--profile",
        default=None,
        choices=PROFILES,
        help="quick: one representative case per operator at fp32; full: every case at every dtype; "
        "auto (matrix.yaml's `profile:`, default): quick for a plain run on a host without an accelerator",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return value


def _case_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not (0 < value <= MAX_CASE_TIMEOUT_S and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in (0, {MAX_CASE_TIMEOUT_S}]")
    return value


class OneLineParser(argparse.ArgumentParser):
    """argparse's usage errors as one line (`portability run: error: ...; see --help`), exit code 2,
    like every other bad input."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="portability", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the matrix and write results + scorecard into --out")
    _add_filters(run)
    run.add_argument("--out", required=True, help="run directory")
    run.add_argument("--resume", action="store_true", help="finish an interrupted run in --out")
    run.add_argument("--no-serving", action="store_true", help="operator cases only")
    run.add_argument("--serving-only", action="store_true", help="Qwen3 serving only, no operator cases")
    run.add_argument(
        "--engines", default=None, help="serving engines (vllm,vllm-fl,hf), overriding matrix.yaml"
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
        "--flaggems-exclude",
        default=None,
        help="FlagGems functions left off in the flaggems serving cells (e.g. a bisection's culprits: mul), "
        "overriding serving.flaggems_exclude",
    )
    run.add_argument(
        "--allow-mismatched-pair",
        action="store_true",
        help="serve vllm-plugin-FL even when the installed vLLM is not the one its branch declares "
        "(the row says so), overriding serving.allow_mismatched_pair",
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
        type=_case_seconds,
        default=None,
        metavar="S",
        help="seconds one case may take, compile and autotune included, overriding perf.timeout_s (a warm "
        "cache needs far less than a cold one: a case still running then is reported as a timeout)",
    )
    run.add_argument(
        "--fail-on",
        choices=FAIL_ON,
        default="error",
        help="which results make the exit code 1: fail (wrong results), error (any failing status or a cell "
        "that could not start; default), any (also fallback, unsupported, skip, infra, not run), never",
    )
    run.add_argument(
        "--reruns",
        type=_non_negative_int,
        default=1,
        metavar="N",
        help="re-run each failing or crashing case up to N times in a fresh worker before reporting it; "
        "one that then passes is `flaky` (default 1; timeouts are not re-run)",
    )
    run.add_argument(
        "--repeat",
        type=_positive_int,
        default=None,
        metavar="N",
        help="run each case's timing N times and report its coefficient of variation (latency_cv, "
        "device_cv), overriding perf.repeat; `portability diff` takes its noise threshold from it",
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
    con.add_argument(
        "--allow-unavailable",
        action="store_true",
        help="an unavailable backend or device is reported as skipped instead of failing",
    )
    con.add_argument(
        "--allow-unverified-routing",
        action="store_true",
        help="an adapter without kernel_launches() skips the routing check instead of failing it",
    )
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
    cim.add_argument("--cells", default="all", help="backend@device cells, comma-separated, or all")
    cim.add_argument("--runners", default="", help="runner label per device type: cuda=hopper,npu=ascend")
    cim.set_defaults(func=cmd_ci_matrix)
    chg = sub.add_parser(
        "changed-ops", help="the operators a FlagGems pull request touches, for run --ops (all / none / list)"
    )
    chg.add_argument("--source", required=True, help="the pull request's FlagGems git checkout")
    chg.add_argument("--base", required=True, help="the pull request's base commit (or branch)")
    chg.set_defaults(func=cmd_changed_ops)
    mrg = sub.add_parser("merge", help="merge run directories from several machines into one scorecard")
    mrg.add_argument("shards", nargs="*", help="run directories (or results.jsonl files)")
    mrg.add_argument("--out", required=True)
    mrg.add_argument(
        "--expected-cells",
        default="",
        help="backend@device cells the shards should hold (a CI matrix's): one without a shard is not run",
    )
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
    ven = sub.add_parser(
        "vendors", help="what each vendor backend of the installed FlagGems declares (no hardware needed)"
    )
    ven.add_argument("--vllm-fl", default=None, help="a vllm-plugin-FL tree: add its per-vendor blacklists")
    ven.add_argument("--json", action="store_true", help="machine-readable output")
    ven.set_defaults(func=cmd_vendors)
    return parser
