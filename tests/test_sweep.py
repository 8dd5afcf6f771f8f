"""A real CPU sweep through the command line: torch and inductor cells run, flaggems is unavailable."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from conftest import flag_gems_installed

OPS = "softmax,mm,topk"


def test_cpu_sweep_end_to_end(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli(
        "run",
        "--backends",
        "torch,inductor,flaggems",
        "--devices",
        "cpu,npu",
        "--ops",
        OPS,
        "--dtypes",
        "fp32",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    ops = [r for r in rows if r["kind"] == "op"]
    cells = {r["cell"]: r for r in rows if r["kind"] == "cell"}

    # every planned case has exactly one row, on both runnable cells
    ids = [r["id"] for r in ops]
    assert len(ids) == len(set(ids))
    assert {r["cell"] for r in ops} == {"torch@cpu", "inductor@cpu"}
    assert {r["op"] for r in ops} == set(OPS.split(","))
    for r in ops:
        assert r["status"] == "pass", r
        assert r["latency_ms"] > 0 and r["latency_p10_ms"] <= r["latency_ms"] <= r["latency_p90_ms"]
        assert r["versions"]["torch"].startswith("2.")
        assert r["max_abs_err"] is not None and r["atol"] >= 0
    assert all(r["speedup"] == 1.0 for r in ops if r["cell"] == "torch@cpu")
    assert all(r["speedup"] > 0 and r["baseline_ms"] > 0 for r in ops if r["cell"] == "inductor@cpu")
    assert any(r.get("tflops") for r in ops if r["op"] == "mm")

    # cells this host cannot run are reported with the reason, never as failures
    assert cells["torch@npu"]["status"] == "unavailable" and "torch_npu" in cells["torch@npu"]["reason"]
    flaggems = cells["flaggems@cpu"]
    assert flaggems["status"] == "unavailable"
    if flag_gems_installed():
        assert "flag_gems failed to initialise" in flaggems["reason"]

    md = (out / "scorecard.md").read_text()
    planned = len(json.loads((out / "plan.json").read_text())["cases"])
    assert f"**All {planned} planned case(s) of 2 available cell(s) pass.**" in md
    assert "| softmax" in md and "flaggems@" in md
    junit = ET.parse(out / "junit.xml").getroot()
    assert {s.get("name") for s in junit.iter("testsuite")} >= {"torch@cpu", "inductor@cpu", "flaggems@cpu"}
    summary = json.loads((out / "scorecard.json").read_text())
    assert {c["cell"] for c in summary["cells"]} == set(cells)


def test_workers_flag_spreads_a_cell_over_xdist_workers(tmp_path, cli):
    out = tmp_path / "run"
    args = ("run", "--backends", "torch", "--devices", "cpu", "--ops", OPS, "--dtypes", "fp32")
    proc = cli(*args, "--no-serving", "--workers", "2", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    ops = [r for r in rows if r["kind"] == "op"]
    assert ops and all(r["status"] == "pass" for r in ops)
    assert {r["worker"] for r in ops} == {"gw0", "gw1"}  # cpu cells default to one worker

    bad = cli(*args, "--workers", "0", "--out", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "--workers: '0' is not a whole number >= 1" in bad.stderr
    assert not (tmp_path / "bad").exists()
