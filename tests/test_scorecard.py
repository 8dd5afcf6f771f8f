"""Scorecard rendering from result rows: summary counts, grid verdicts, speedups, JUnit."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

from portability.results.store import ResultWriter, read_results
from portability.scorecard.write import render_junit, render_markdown, summarize, write_scorecard


def op_row(cell: str, op: str, case: str, status: str, speedup: float | None = None, **extra) -> dict:
    backend, device = cell.split("@")
    row = {
        "id": f"{cell}::{op}::{case}::fp32",
        "kind": "op",
        "cell": cell,
        "backend": backend,
        "device": device,
        "op": op,
        "case": case,
        "dtype": "fp32",
        "status": status,
        "reason": extra.pop("reason", None),
    }
    if speedup is not None:
        row.update(speedup=speedup, latency_ms=1.0 / speedup)
    return {**row, **extra}


ROWS = [
    {
        "id": "cell:fast@cuda",
        "kind": "cell",
        "cell": "fast@cuda",
        "backend": "fast",
        "device": "cuda",
        "status": "pass",
        "device_name": "NVIDIA H100 80GB HBM3",
        "versions": {"torch": "2.11"},
    },
    {
        "id": "cell:gems@npu",
        "kind": "cell",
        "cell": "gems@npu",
        "backend": "gems",
        "device": "npu",
        "status": "unavailable",
        "reason": "torch_npu not installed",
    },
    op_row("fast@cuda", "softmax", "a", "pass", 2.0),
    op_row("fast@cuda", "softmax", "b", "pass", 0.5),
    op_row("fast@cuda", "mm", "a", "pass", 4.0),
    op_row(
        "fast@cuda",
        "mm",
        "b",
        "fail",
        3.0,
        reason="3/10 element(s) outside atol",
        max_abs_err=0.5,
        atol=0.01,
        rtol=0.01,
    ),
    op_row("fast@cuda", "sort", "a", "unsupported", reason="no bf16"),
    op_row("fast@cuda", "topk", "a", "crash", reason="worker process died"),
]


def test_summary_counts_coverage_geomean_and_share_faster():
    data = summarize(ROWS)
    cells = {c["cell"]: c for c in data["cells"]}
    fast = cells["fast@cuda"]
    assert fast["counts"] == {"pass": 3, "fail": 1, "unsupported": 1, "crash": 1}
    assert fast["operators"] == 4 and fast["operators_passing"] == 1  # only softmax passes every case
    # geomean of passing cases only, the failing mm case (speedup 3) excluded: (2 * 0.5 * 4) ** (1/3)
    assert math.isclose(fast["geomean_speedup"], 4 ** (1 / 3))
    assert math.isclose(fast["faster_than_native"], 2 / 3)
    assert cells["gems@npu"]["state"] == "unavailable"
    assert data["grid"]["mm"]["fast@cuda"]["verdict"] == "fail"
    assert data["grid"]["topk"]["fast@cuda"]["verdict"] == "crash"
    assert [f["op"] for f in data["failures"]] == ["mm", "topk"]


def test_markdown_shows_summary_grid_reasons_and_unavailable_cells():
    md = render_markdown(summarize(ROWS))
    assert "**2 failing case(s).**" in md
    assert "unavailable: torch\\_npu not installed" in md
    grid_line = next(line for line in md.splitlines() if line.startswith("| softmax"))
    assert "✓ 1.00x" in grid_line  # geomean(2, 0.5)
    assert "✗ 1/2" in next(line for line in md.splitlines() if line.startswith("| mm"))
    assert "💥 1/1" in next(line for line in md.splitlines() if line.startswith("| topk"))
    assert "3/10 element(s) outside atol" in md and "max abs err 0.5" in md


def test_junit_has_one_suite_per_cell_with_failures_errors_and_skips():
    root = ET.fromstring(render_junit(ROWS))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    fast = suites["fast@cuda"]
    assert (fast.get("tests"), fast.get("failures"), fast.get("errors"), fast.get("skipped")) == (
        "6",
        "1",
        "1",
        "1",
    )
    assert suites["gems@npu"].get("skipped") == "1"
    assert fast.find("testcase/failure") is not None


def test_planned_cases_without_a_row_are_reported_as_not_run():
    planned = [{"id": r["id"], "cell": r["cell"], "op": r["op"]} for r in ROWS if r["kind"] == "op"]
    planned.append({"id": "fast@cuda::mm::c::fp32", "cell": "fast@cuda", "op": "mm"})
    planned.append({"id": "fast@cuda::exp::a::fp32", "cell": "fast@cuda", "op": "exp"})
    data = summarize(ROWS, planned)
    assert data["not_run"] == 2
    assert next(c for c in data["cells"] if c["cell"] == "fast@cuda")["not_run"] == 2
    md = render_markdown(data)
    assert "**2 planned case(s) were not run**" in md
    assert "not run 1" in next(line for line in md.splitlines() if line.startswith("| exp"))
    assert "(+1 not run)" in next(line for line in md.splitlines() if line.startswith("| mm"))


def test_latest_row_of_a_case_wins_and_files_are_written(tmp_path):
    writer = ResultWriter(tmp_path / "results.jsonl")
    for row in ROWS:
        writer.append(row)
    writer.append(op_row("fast@cuda", "topk", "a", "pass", 1.5))  # a resumed run re-ran the crashed case
    paths = write_scorecard(tmp_path)
    data = json.loads(paths["json"].read_text())
    assert data["grid"]["topk"]["fast@cuda"]["verdict"] == "pass"
    assert len(read_results(tmp_path / "results.jsonl")) == len(ROWS) + 1
    assert paths["markdown"].read_text().startswith("<!-- flagos-portability-scorecard -->")


def test_failures_native_torch_shares_are_flagged_not_reclassified(tmp_path):
    fail = {"reason": "2/125 element(s) outside atol", "max_abs_err": 0.5, "atol": 0.01, "rtol": 0.01}
    rows = [
        op_row("torch@cuda", "aten.cumsum", "s0 5x5x5", "fail", **fail),  # the spec's problem
        op_row("flaggems@cuda", "aten.cumsum", "s0 5x5x5", "fail", **fail),
        op_row("torch@cuda", "aten.softmax", "s1", "pass", 1.0),  # the backend's problem
        op_row("flaggems@cuda", "aten.softmax", "s1", "fail", 1.0, **fail),
        op_row("flaggems@cuda", "aten.exp", "s2", "fail", **fail),  # torch@cuda has no row: no verdict
        op_row("torch@cuda", "aten.topk", "s3", "crash", reason="worker died"),
        op_row("flaggems@cuda", "aten.topk", "s3", "crash", reason="worker died"),  # not a wrong result
        op_row("flaggems@npu", "aten.cumsum", "s0 5x5x5", "fail", **fail),  # another device: no baseline
        op_row("torch@cuda", "aten.var", "s4", "error", reason="TypeError"),  # native gave no values
        op_row("flaggems@cuda", "aten.var", "s4", "fail", **fail),  # so nothing to compare with
    ]
    writer = ResultWriter(tmp_path / "results.jsonl")
    for row in rows:
        writer.append(row)
    paths = write_scorecard(tmp_path)
    data = json.loads(paths["json"].read_text())
    failures = {f["id"]: f for f in data["failures"]}
    assert len(failures) == 9  # every failure is still listed: an annotation, not a filter
    assert failures["flaggems@cuda::aten.cumsum::s0 5x5x5::fp32"]["native_also_fails"] is True
    assert failures["flaggems@cuda::aten.softmax::s1::fp32"]["native_also_fails"] is False
    for case_id in (
        "flaggems@cuda::aten.exp::s2::fp32",
        "flaggems@cuda::aten.var::s4::fp32",
        "flaggems@cuda::aten.topk::s3::fp32",
        "flaggems@npu::aten.cumsum::s0 5x5x5::fp32",
        "torch@cuda::aten.cumsum::s0 5x5x5::fp32",
    ):
        assert "native_also_fails" not in failures[case_id], case_id
    cells = {c["cell"]: c for c in data["cells"]}
    assert cells["flaggems@cuda"]["counts"] == {"fail": 4, "crash": 1}
    assert cells["flaggems@cuda"]["native_check"] == {
        "baseline": "torch@cuda",
        "compared": 2,
        "also_fail": 1,
        "no_native_row": 2,
    }
    assert cells["flaggems@npu"]["native_check"] is None and cells["torch@cuda"]["native_check"] is None

    md = paths["markdown"].read_text().replace("\u200b", "")  # md_text breaks "@" with a zero-width space
    assert "**9 failing case(s).**" in md  # the verdict counts as before
    lines = md.splitlines()
    both = next(line for line in lines if line.startswith("- `flaggems@cuda` aten.cumsum"))
    only = next(line for line in lines if line.startswith("- `flaggems@cuda` aten.softmax"))
    assert "**fail** (native fails too) — 2/125 element(s) outside atol" in both
    assert "native fails too" not in only and "**fail** — 2/125" in only
    assert md.count("(native fails too)") == 1
    assert (
        "- `flaggems@cuda`: 1 of 2 wrong-result failures also fail on `torch@cuda` (the native baseline): "
        "suspect the spec or tolerance, not the backend. "
        "2 more not compared (no pass/fail row on `torch@cuda`)."
    ) in lines
    assert not any(line.startswith(("- `flaggems@npu`:", "- `torch@cuda`:")) for line in lines)


def test_coverage_measured_without_some_specs_says_so_beside_the_count():
    """On a GPU box without expecttest the OpInfo specs could not load: 148/433 there was a harness gap."""
    data = summarize(ROWS)
    data["coverage"] = {
        "covered": 148,
        "registered": 433,
        "uncovered": ["abs"],
        "registry": "live",
        "registry_note": "vendor nvidia",
        "broken_specs": {"aten._log_softmax": "ModuleNotFoundError: No module named 'expecttest'"},
    }
    md = render_markdown(data)
    line = next(line for line in md.splitlines() if line.startswith("FlagGems coverage"))
    assert "**148/433**" in line and "1 specs could not be built on the host that measured it" in line
    assert "No module named 'expecttest'" in line
    data["coverage"]["broken_specs"] = {}
    assert "could not be built" not in render_markdown(data)
