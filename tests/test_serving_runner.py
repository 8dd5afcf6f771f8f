"""The serving runner end to end through the CLI (`serving/runner.py`, `serving/steps.py`): a run stopped by
SIGTERM and resumed, the throughput gate and its time attribution with a FlagGems whose `mm` is slow, and
tensor parallelism as an axis."""

from __future__ import annotations

import importlib.util
import os

import pytest

from portability.results.store import read_results
from tests.conftest import ROOT, run_cli, serving_process_pids

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


HF_MATRIX = """
version: 1
backends:
  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}
serving:
  engines: [hf]
  backends: [torch]
  model: qwen3-tiny
  input_len: 32
  output_len: 8
  num_prompts: 4
  max_num_seqs: 4
  gate: {prompts: 2, prompt_len: 16}
  timeouts: {run_s: 300}
"""


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is not installed (the hf serving engine)")
def test_sigterm_while_serving_keeps_what_was_measured_and_resume_serves_the_cell_again(tmp_path):
    """A run stopped by SIGTERM (a CI time limit) in the middle of a cell: the cell's throughput is on disk
    with status timeout, no worker survives, a scorecard is written, and --resume serves the cell again."""
    import signal
    import subprocess
    import sys
    import time

    from portability.results.store import read_results
    from tests.conftest import ROOT

    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(HF_MATRIX)
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PORTABILITY_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "portability", "run", "--matrix", str(matrix), "--serving-only"]
    proc = subprocess.Popen([*cmd, "--out", str(out)], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    said = []
    deadline = time.monotonic() + 240
    for line in proc.stderr:  # stop it once throughput is measured, while the gate's reference runs
        said.append(line)
        if "== serving reference:" in line or time.monotonic() > deadline:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, "".join(said) + rest
    row = next(r for r in read_results(out) if r.get("kind") == "serving")
    assert row["status"] == "timeout" and row["stopped"] and "SIGTERM" in row["reason"], row
    assert row["output_tok_s"] > 0 and row["gate"] is None  # throughput kept, gate never ran
    assert (out / "scorecard.md").exists() and "1 Qwen3 serving row(s) fail" in (
        out / "scorecard.md"
    ).read_text()
    time.sleep(1.0)
    assert not serving_process_pids(tmp_path / "cache"), "a serving worker outlived the stopped run"

    again = subprocess.run(
        [*cmd, "--out", str(out), "--resume"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    rows = [r for r in read_results(out) if r.get("kind") == "serving"]
    assert [r["status"] for r in rows] == ["timeout", "pass"]  # served again, the latest row wins
    assert "serving row(s) fail" not in (out / "scorecard.md").read_text()


SLOW_MM_MATRIX = """
version: 1
backends:
  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}
  flaggems: {adapter: flaggems, devices: [cpu], dtypes: [fp32]}
serving:
  engines: [hf]
  backends: [torch, flaggems]
  model: qwen3-tiny
  input_len: 32
  output_len: 8
  num_prompts: 4
  max_num_seqs: 4
  min_throughput_ratio: 0.3
  gate: {prompts: 2, prompt_len: 16}
  timeouts: {run_s: 300}
"""


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is not installed (the hf serving engine)")
def test_a_slow_flaggems_operator_fails_the_throughput_gate_is_named_and_serving_without_it_passes(tmp_path):
    """tests/slow_flag_gems: FlagGems' `mm` is exact but sleeps 10 ms a call. The logprob gate passes, the
    throughput gate fails, the step profile names mm as the decode step's gap (15 linear layers, 15 calls
    a step); served again without mm the cell passes both gates. One OpenMP thread: on a loaded 2-core box
    the threads a sleeping kernel leaves idle wake late, and the next kernel (addmm) would carry the wait."""
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(SLOW_MM_MATRIX)
    out = tmp_path / "run"
    env = {
        "PYTHONPATH": f"{ROOT / 'tests' / 'slow_flag_gems'}{os.pathsep}{ROOT}",
        "PORTABILITY_CACHE": str(tmp_path / "cache"),
        "OMP_NUM_THREADS": "1",
    }
    args = ("run", "--out", str(out), "--matrix", str(matrix), "--serving-only")
    first = run_cli(*args, env=env)
    assert first.returncode == 1, first.stderr[-3000:]  # the slow cell fails: the exit code says so
    rows = {r["cell"]: r for r in read_results(out) if r.get("kind") == "serving"}
    assert rows["torch@cpu"]["status"] == "pass" and rows["torch@cpu"]["throughput_gate"]["verdict"] == "pass"
    slow = rows["flaggems@cpu"]
    assert slow["status"] == "fail" and slow["failed_gates"] == ["throughput"], slow["reason"]
    assert slow["gate"]["verdict"] == "pass" and slow["throughput_gate"]["ratio"] < 0.3
    decode = slow["time_gap"]["decode"]
    top = decode["ops"][0]
    assert top["op"] == "mm" and top["share"] > 0.5 and top["calls"] == 15, decode
    assert top["flaggems"] == ["flag_gems.mm"]
    assert "throughput gate failed" in slow["reason"] and ": mm +" in slow["reason"]
    card = (out / "scorecard.md").read_text()
    assert "Where the time goes" in card and "flag\\_gems.mm" in card

    again = run_cli(*args, "--resume", "--flaggems-exclude", "mm", env=env)
    assert again.returncode == 1, again.stderr[-3000:]  # the slow row stays beside the new one
    latest = {r["id"]: r for r in read_results(out) if r.get("kind") == "serving"}
    without = latest["serving:hf:flaggems@cpu:qwen3-tiny:without:mm"]
    assert without["status"] == "pass" and without["failed_gates"] == [], without["reason"]
    assert without["throughput_gate"]["ratio"] >= 0.3
    assert not serving_process_pids(tmp_path / "cache")


def test_tensor_parallelism_is_an_axis_and_an_engine_on_one_device_says_it_cannot(tmp_path):
    """tensor_parallel_size [2] with the hf engine: each cell gets its own TP row, unavailable with the
    reason, before any engine starts."""
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        HF_MATRIX.replace("  backends: [torch]", "  backends: [torch]\n  tensor_parallel_size: [2]")
    )
    out = tmp_path / "run"
    done = run_cli("run", "--out", str(out), "--matrix", str(matrix), "--serving-only")
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = [r for r in read_results(out) if r.get("kind") == "serving"]
    assert row["id"] == "serving:hf:torch@cpu:qwen3-tiny:tp2" and row["tensor_parallel_size"] == 2
    assert row["status"] == "unavailable" and "runs on one device: no tensor parallelism" in row["reason"]
