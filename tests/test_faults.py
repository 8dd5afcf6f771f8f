"""Planted faults: real misbehaving adapters (tests/fault_adapters/) run beside a good backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from conftest import ROOT

FAULTS = "tests/fault_adapters/faults.yaml"


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_each_planted_fault_is_classified_and_every_other_result_survives(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("run", "--matrix", FAULTS, "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = rows_of(out)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "a case was recorded twice"
    by_cell: dict[str, dict[str, dict]] = {}
    for r in rows:
        if r["kind"] == "op":
            by_cell.setdefault(r["cell"], {})[f"{r['op']}/{r['case']}"] = r
    cases = {
        "stack/k/v 512x1024",
        "stack/odd 3x5",
        "copy_/kv cache write 512x2560",
        "copy_/transposed source 33x65",
    }

    # the good backend is untouched by its neighbours' crashes and hangs
    assert set(by_cell["torch@cpu"]) == cases
    assert all(r["status"] == "pass" for r in by_cell["torch@cpu"].values())

    # a segfault in every case: each is a crash with the dying worker's last words, and the next case
    # ran on a fresh worker (otherwise only the first would have a row)
    seg = by_cell["segfault@cpu"]
    assert set(seg) == cases and {r["status"] for r in seg.values()} == {"crash"}
    assert all("Segmentation fault" in r["reason"] and "planted" in r["reason"] for r in seg.values())

    hang = by_cell["hang@cpu"]
    assert set(hang) == cases and {r["status"] for r in hang.values()} == {"timeout"}
    assert all("planted: spinning forever" in r["reason"] for r in hang.values())

    raised = by_cell["raises@cpu"]
    assert {r["status"] for r in raised.values()} == {"error"}
    assert all("planted kernel failure" in r["reason"] for r in raised.values())

    # wrong only for the strided input
    nc = by_cell["noncontiguous@cpu"]
    assert nc["copy_/transposed source 33x65"]["status"] == "fail"
    assert {r["status"] for k, r in nc.items() if k != "copy_/transposed source 33x65"} == {"pass"}

    # half of every output left as allocated: caught on every case (outputs are poisoned first)
    assert {r["status"] for r in by_cell["unwritten@cpu"].values()} == {"fail"}

    # an adapter that cannot import is an error of its cell, not a pile of operator failures
    cell = next(r for r in rows if r["id"] == "cell:importfails@cpu")
    assert cell["status"] == "error" and "libmychip_runtime.so" in cell["reason"]
    assert "importfails@cpu" not in by_cell

    summary = {c["cell"]: c for c in json.loads((out / "scorecard.json").read_text())["cells"]}
    assert summary["importfails@cpu"]["state"] == "error" and summary["importfails@cpu"]["cases"] == 0
    assert Counter(summary["torch@cpu"]["counts"]) == Counter({"pass": 4})


def test_resume_after_kill_9_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "run"
    args = [
        sys.executable,
        "-m",
        "portability",
        "run",
        "--backends",
        "torch",
        "--devices",
        "cpu",
        "--ops",
        "softmax,add,silu,rms_norm",
        "--dtypes",
        "fp32,bf16",
        "--out",
        str(out),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not results.exists() or len(results.read_text().splitlines()) < 6):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the orchestrator, pytest and its workers, mid-case
    proc.wait()
    before = rows_of(out)
    planned = {c["id"] for c in json.loads((out / "plan.json").read_text())["cases"]}
    assert 0 < len([r for r in before if r["kind"] == "op"]) < len(planned)

    resumed = subprocess.run(
        [*args, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = rows_of(out)
    op_ids = [r["id"] for r in after if r["kind"] == "op"]
    assert sorted(op_ids) == sorted(planned), "every planned case has exactly one row"
    assert after[: len(before)] == before, "rows written before the kill are kept as they were"
    assert all(r["status"] == "pass" for r in after if r["kind"] == "op")
