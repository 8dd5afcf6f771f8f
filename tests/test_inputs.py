"""Every bad argument or matrix value is one line on stderr and exit code 2, never a traceback; names from a
run cannot break out of the Markdown/HTML/plots they are shown in; the default profile fits a first run.

Arguments are generated (mistypings of real names, empty lists, out-of-range numbers, paths of the wrong
kind) and run through the real command line, a few subprocesses at a time. Operators come from
tests/fault_adapters/specs.py (via $PORTABILITY_SPECS) where a run is needed."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

from portability.catalog import load_catalog
from portability.cli import main
from portability.cli.common import load_config
from portability.plan.cells import Filters, build_plan
from portability.scorecard.safe_text import md_code

SPECS = {"PORTABILITY_SPECS": "tests/fault_adapters/specs.py"}
TINY = "backends:\n  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}\n"
NO_SERVING = TINY + "perf: {warmup: 1, repetitions: 3, budget_s: 0.1, timeout_s: 60}\n"


def _typo(name: str) -> str:
    """A one-letter slip: the last two letters swapped (or the last one doubled)."""
    return name[:-2] + name[-1] + name[-2] if len(name) > 3 and name[-1] != name[-2] else name + name[-1]


def _bad_arguments(tmp: Path) -> list[tuple[tuple[str, ...], str]]:
    """(arguments, words the one-line error must hold): generated from the real names and flags."""
    afile = tmp / "a-file"
    afile.write_text("not results\n")
    array = tmp / "array.jsonl"
    array.write_text("[1, 2]\n")
    (tmp / "empty-run").mkdir()
    no_serving = tmp / "no-serving.yaml"
    no_serving.write_text(NO_SERVING)
    out = str(tmp / "out")
    cases: list[tuple[tuple[str, ...], str]] = []
    for flag, real, what in (
        ("--ops", "softmax", "operator"),
        ("--devices", "cuda", "device"),
        ("--backends", "flaggems", "backend"),
        ("--dtypes", "bf16", "dtype"),
        ("--tags", "qwen3", "tag"),
    ):
        cases.append((("list", flag, _typo(real)), f"{flag}: unknown {what} '{_typo(real)}'"))
        cases.append((("list", flag, ""), f"{flag}: empty, expected"))
        cases.append((("list", flag, f"{real},,\x1b[2J"), f"{flag}: unknown {what}"))
    for value in ("0", "-1", "nan", "inf", "1e300", "soon"):
        cases.append((("run", "--case-timeout", value, "--out", out), "argument --case-timeout"))
    for value in ("0", "1.5", "many"):
        cases.append((("run", "--workers", value, "--out", out), "argument --workers"))
    cases += [
        (("list", "--profile", "fast"), "argument --profile: invalid choice"),
        (("run", "--out", str(afile)), f"--out: {afile} is a file, expected a directory"),
        (("run", "--backends", "torch", "--devices", "cpu", "--out", "/proc/portability/out"), "--out: "),
        (("run", "--trend", str(tmp), "--out", out), f"--trend: {tmp} is a directory, expected a file"),
        (("scorecard", str(afile)), "no result row"),
        (("scorecard", str(array)), "no result row"),
        (("scorecard", str(tmp / "empty-run")), "no results.jsonl"),
        (("report", str(tmp / "empty-run")), "no results.jsonl"),
        (("run", "--matrix", str(no_serving), "--serving-only", "--out", out), "has no serving block"),
        (("run", "--matrix", str(no_serving), "--engines", "hf", "--out", out), "has no serving block"),
        (("run", "--engines", "hf", "--no-serving", "--out", out), "nothing is served with --no-serving"),
        (("run", "--engines", "vlm", "--out", out), "did you mean 'vllm'"),
        (
            ("run", "--serving-only", "--backends", "inductor", "--devices", "cpu", "--out", out),
            "no selected cell",
        ),
        (
            ("run", "--dtypes", "fp64", "--backends", "torch", "--devices", "cpu", "--out", out),
            "--dtypes fp64",
        ),
        (("list", "--backends", "torch", "--devices", "cpu", "--tags", "moe", "--dtypes", "int64"), "no "),
    ]
    return cases


def _assert_one_line(args: tuple[str, ...], code: int, err: str, words: str) -> None:
    shown = f"{args}: rc {code}, stderr {err!r}"
    assert code == 2, shown
    assert "Traceback" not in err and err.count("\n") == 1, shown
    assert "\x1b" not in err, shown  # what the user typed is echoed without terminal codes
    assert words in err, shown
    assert len(err) < 600, shown  # the closest names, never the whole catalog


def test_every_generated_bad_argument_is_one_line_and_exit_2(tmp_path, capsys):
    """All variants in-process (the parser and checks `python -m portability` runs; a subprocess each
    would cost seconds of imports); the real command line gets a sample of them below."""
    cases = _bad_arguments(tmp_path)
    assert len(cases) >= 35
    for args, words in cases:
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
        _assert_one_line(args, code, capsys.readouterr().err, words)
    assert not (tmp_path / "out").exists(), "a refused run left a directory behind"


def test_a_sample_of_bad_arguments_through_the_real_command_line(tmp_path):
    cases = _bad_arguments(tmp_path)
    fixed = cases[-15:]
    sample = [cases[0], cases[1], cases[16], fixed[1], fixed[4], fixed[8]]  # one of each kind
    with ThreadPoolExecutor(max_workers=2 * (os.cpu_count() or 2)) as pool:
        procs = list(pool.map(lambda c: run_cli(*c[0], timeout=300), sample))
    for (args, words), proc in zip(sample, procs, strict=True):
        _assert_one_line(args, proc.returncode, proc.stderr, words)
        assert proc.stdout == ""
    assert not (tmp_path / "out").exists(), "a refused run left a directory behind"


def test_a_mistyped_operator_gets_the_closest_names_not_the_catalog(capsys):
    assert main(["list", "--ops", _typo("softmax")]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'softmax'" in err and f"one of the {len(load_catalog())} known operators" in err


BAD_MATRIX_VALUES = [
    ("profile: fast\n" + TINY, "profile is the string 'fast', expected one of auto, quick, full"),
    (TINY + "perf: {timeout_s: 1e300}\n", "timeout_s is 1e+300, expected a finite number > 0.0 and <= 86400"),
    (TINY + "operators: {include: [sofmtax]}\n", "did you mean 'softmax'"),
    (TINY + "tolerances: {cases: {'sofmtax': {fp32: {atol: 1e-3}}}}\n", "names no operator"),
    (TINY + "tolerances: {cases: {'softmax/logits 8x15': {fp32: {atol: 1e-3}}}}\n", "softmax has no case"),
    (TINY + "tolerances: {dtypes: {fp32: {atol: 1e-3x}}}\n", "atol is the string '1e-3x'"),
    (
        TINY + "serving: {engines: [vlm]}\n",
        "unknown engine 'vlm', expected one of vllm, vllm-fl, hf (did you",
    ),
    (TINY + "serving: {gate: {mean_kl: small}}\n", "mean_kl is 'small', expected a number > 0"),
]


def test_bad_matrix_values_are_one_line_with_the_file_line(tmp_path, capsys):
    paths = []
    for i, (text, words) in enumerate(BAD_MATRIX_VALUES):
        paths.append(tmp_path / f"m{i}.yaml")
        paths[-1].write_text(text)
        assert main(["list", "--matrix", str(paths[-1])]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"{paths[-1]}:") and err.count("\n") == 1 and words in err, err
    for path, (_, words) in list(zip(paths, BAD_MATRIX_VALUES, strict=True))[1:3]:  # and for real
        proc = run_cli("list", "--matrix", str(path), timeout=300)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr and words in proc.stderr, proc.stderr


def test_exponent_floats_case_tolerances_and_an_adapter_beside_the_matrix_are_accepted(tmp_path):
    """YAML 1.1 reads `1e-3` as a string (PyYAML); a matrix file means the number. A relative
    `file.py:Class` is the file beside the matrix, wherever the command runs."""
    (tmp_path / "mine.py").write_text((ROOT / "tests" / "fault_adapters" / "raises.py").read_text())
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "backends:\n  mine: {adapter: 'mine.py:RaisingAdapter', devices: [cpu], dtypes: [fp32]}\n"
        "tolerances:\n  dtypes: {fp32: {atol: 1e-3, rtol: 2E-4}}\n"
        "  cases: {'softmax': {fp32: {atol: 1e-2}}, 'softmax/logits 8x151936': {fp32: {rtol: 1e-2}}}\n"
    )
    config = load_config(str(matrix))
    tolerance = config.tolerance("add", "x", "mine", "cpu", "fp32")
    assert (tolerance.atol, tolerance.rtol) == (1e-3, 2e-4)
    tolerance = config.tolerance("softmax", "logits 8x151936", "mine", "cpu", "fp32")
    assert (tolerance.atol, tolerance.rtol) == (1e-2, 1e-2)
    proc = run_cli("list", "--matrix", "matrix.yaml", "--ops", "add", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "mine@cpu" in proc.stdout and "available" in proc.stdout


def test_a_fresh_run_into_an_old_run_directory_does_not_show_the_old_coverage(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "coverage.json").write_text(json.dumps({"covered": 1, "registered": 433, "uncovered": ["stale"]}))
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(NO_SERVING)
    proc = run_cli("run", "--matrix", str(matrix), "--ops", "planted_scale", "--out", str(out), env=SPECS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (out / "coverage.json").exists()
    assert "coverage" not in (out / "scorecard.md").read_text().lower()


# -- the default profile ----------------------------------------------------------------------------------


def test_quick_profile_runs_every_operator_once_at_fp32_and_inductor_on_the_qwen3_path():
    config = load_config(str(ROOT / "matrix.yaml"))
    catalog = load_catalog()
    plan = build_plan(config, Filters(backends=("torch", "inductor"), devices=("cpu",)), profile="auto")
    assert plan.profile == "quick"  # no accelerator here, whole catalog asked for
    by_cell: dict[str, list] = {}
    for case in plan.cases:
        by_cell.setdefault(case.cell, []).append(case)
    torch_ops = [c.op for c in by_cell["torch@cpu"]]
    floats = [s for s in catalog.values() if {"fp32", "fp16", "bf16"} & set(s.dtypes)]
    assert len(torch_ops) == len(set(torch_ops)) == len(floats)  # every operator, one case
    assert all(c.dtype == "fp32" for c in plan.cases if "fp32" in catalog[c.op].dtypes)
    qwen3 = {s.name for s in floats if "qwen3" in s.tags}
    assert {c.op for c in by_cell["inductor@cpu"]} == qwen3
    assert max(c.input_bytes for c in plan.cases) < 2**30  # no lm_head or vocabulary-sized embedding
    chosen = build_plan(
        config, Filters(backends=("torch",), devices=("cpu",), ops=("softmax",)), profile="auto"
    )
    assert chosen.profile == "full" and len(chosen.cases) == len(catalog["softmax"].cases) * 3


# -- untrusted text ---------------------------------------------------------------------------------------


def _rows(cell: str, op: str, reason: str) -> list[dict]:
    backend, device = cell.split("@")
    base = {"kind": "op", "cell": cell, "backend": backend, "device": device, "case": "c", "dtype": "fp32"}
    return [
        {
            "id": f"cell:{cell}",
            "kind": "cell",
            "cell": cell,
            "backend": backend,
            "device": device,
            "status": "pass",
        },
        {
            **base,
            "id": f"{cell}::{op}::c::fp32",
            "op": op,
            "status": "fail",
            "reason": reason,
            "max_abs_err": 1.0,
        },
        {
            **base,
            "id": f"{cell}::ok::c::fp32",
            "op": "ok",
            "status": "pass",
            "latency_ms": 1.0,
            "speedup": 1.0,
        },
    ]


BACKTICK_CELLS = ["a`b@cpu", "``x@cpu", "x@cpu`", "a```b``c@cpu"]


def test_backticks_in_a_cell_name_stay_inside_its_code_span(tmp_path):
    """Rendered by a CommonMark parser, each failure line's code span holds the whole cell name."""
    markdown_it = pytest.importorskip("markdown_it")
    inline = markdown_it.MarkdownIt("commonmark").renderInline
    for name in BACKTICK_CELLS:
        assert inline(md_code(name, 60)).replace("\u200b", "") == f"<code>{name}</code>"
    run = tmp_path / "run"
    run.mkdir()
    rows = [row for i, name in enumerate(BACKTICK_CELLS) for row in _rows(name, f"op{i}", "wrong")]
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run_cli("scorecard", str(run))
    assert proc.returncode == 0, proc.stderr
    for i, name in enumerate(BACKTICK_CELLS):
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("- ") and f" op{i} " in ln)
        html = inline(line[2:]).replace("\u200b", "")
        assert html.startswith(f"<code>{name}</code> op{i}"), html


def test_report_html_drops_bidi_and_terminal_codes_and_plots_mathtext_names_as_text(tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    run.mkdir()
    op = "$\\frac{a}{b}$_x^y"
    reason = "evil \u202eexe.txt\u202c \x1b[31mred\x1b[0m \u2066iso\u2069 done"
    (run / "results.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in _rows("bad\u202e@cpu", op, reason))
    )
    (tmp_path / "trend.jsonl").write_text(
        json.dumps({"time": 1, "run": "r", "cells": {"$x^$@cpu": {"pass": 1, "cases": 2}}, "failing": 1})
        + "\n"
    )
    proc = run_cli("report", str(run), "--trend", str(tmp_path / "trend.jsonl"))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    page = (run / "report.html").read_text()
    for bad in ("\u202e", "\u202c", "\u2066", "\u2069", "\x1b"):
        assert bad not in page
    assert "frac{a}{b}" in page and "bad@cpu" in page


def test_every_scorecard_format_drops_bidi_and_terminal_codes(tmp_path):
    """The same hostile cell name and reason through `portability scorecard`: neither the Markdown, the
    JSON (every string, keys included) nor the JUnit file keeps a bidi override or a terminal escape."""
    run = tmp_path / "run"
    run.mkdir()
    reason = "evil \u202eexe.txt\u202c \x1b[31mred\x1b[0m \u2066iso\u2069 done"
    (run / "results.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in _rows("bad\u202e@cpu", "op\u2066x", reason))
    )
    proc = run_cli("scorecard", str(run))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    for name in ("scorecard.md", "scorecard.json", "junit.xml"):
        text = (run / name).read_text()
        for bad in ("\u202e", "\u202c", "\u2066", "\u2069", "\x1b", "\\u202e", "\\u001b"):
            assert bad not in text, (name, bad)
    data = json.loads((run / "scorecard.json").read_text())
    assert any("exe.txt" in (r.get("reason") or "") for r in data["results"])


def test_a_damaged_trend_file_is_skipped_line_by_line_not_a_traceback(tmp_path):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows("x@cpu", "op", "why")))
    good = {"time": 1, "run": "r", "cells": {"x@cpu": {"pass": 3, "cases": 3}}, "failing": 0}
    trend = tmp_path / "trend.jsonl"
    trend.write_bytes(
        b"\xff\xfe not utf-8\n[1, 2]\n"
        + json.dumps({"cells": {"x@cpu": {"pass": "many"}}}).encode()
        + b"\n{\n"
        + json.dumps(good).encode()
        + b"\n"
    )
    proc = run_cli("report", str(run), "--trend", str(trend))
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert f"4 line(s) of the trend file skipped, not run summaries ({trend}:1)" in proc.stderr
    assert 'id="trend"' in (run / "report.html").read_text()  # the good line is still plotted
