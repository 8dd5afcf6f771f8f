"""The serving bisection end to end on the CPU: a FlagGems whose `rsqrt` is wrong (tests/faulty_flag_gems,
registered into aten for real) fails the accuracy gate of Qwen3 served by the hf engine, the bisection
names `rsqrt` from FlagGems' own call log, and serving again with it left off passes the gate."""

from __future__ import annotations

import importlib.util
import os

import pytest

from portability.results.store import read_results
from tests.conftest import ROOT, run_cli

FAULTY_FLAG_GEMS = ROOT / "tests" / "faulty_flag_gems"

MATRIX = """
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
  gate: {prompts: 2, prompt_len: 16}
  bisect_max_runs: 8
  timeouts: {run_s: 300}
"""

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None,
    reason="transformers is not installed (the hf serving engine)",
)


def test_a_gate_failure_is_bisected_to_the_faulty_kernel_and_serving_without_it_passes(tmp_path):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(MATRIX)
    out = tmp_path / "run"
    env = {
        "PYTHONPATH": f"{FAULTY_FLAG_GEMS}{os.pathsep}{ROOT}",
        "PORTABILITY_CACHE": str(tmp_path / "cache"),
    }
    args = ("run", "--out", str(out), "--matrix", str(matrix), "--serving-only")

    first = run_cli(*args, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = {r["cell"]: r for r in read_results(out) if r.get("kind") == "serving"}
    assert rows["torch@cpu"]["status"] == "pass", rows["torch@cpu"]
    faulty = rows["flaggems@cpu"]
    assert faulty["status"] == "fail" and faulty["gate"]["verdict"] == "fail", faulty
    assert faulty["gate"]["max_abs_logprob_diff"] > 0.05
    assert faulty["culprits"] == ["rsqrt"], faulty
    # the universe is what the failed gate run called: all three kernels ran in Qwen3's forward
    assert faulty["bisect"]["universe"] == "functions the failed gate run called"
    assert faulty["bisect"]["ops"] == 3 and faulty["bisect"]["complete"], faulty["bisect"]
    assert "culprits: rsqrt" in faulty["reason"]
    assert not (out / "coverage.json").exists()  # serving only: no operator case, no catalog coverage
    first_card = (out / "scorecard.md").read_text()
    assert "1 Qwen3 serving row(s) fail" in first_card

    # The user's next step: keep the measured rows and serve FlagGems again without the culprit.
    again = run_cli(*args, "--resume", "--flaggems-exclude", "rsqrt", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "torch@cpu: kept from the earlier run (pass)" in again.stderr
    latest = {r["id"]: r for r in read_results(out) if r.get("kind") == "serving"}
    without = latest["serving:hf:flaggems@cpu:qwen3-tiny:without:rsqrt"]
    assert without["status"] == "pass" and without["gate"]["verdict"] == "pass", without
    assert without["flaggems_exclude"] == ["rsqrt"] and without["culprits"] == []
    assert without["output_tok_s"] > 0 and without["ratio_vs_native"] > 0  # against the kept torch row
    card = (out / "scorecard.md").read_text()
    assert "flaggems@​cpu without rsqrt" in card  # md_text breaks autolinks after '@'
    # the faulty row stays beside it: the scorecard shows both configurations
    assert "serving:hf:flaggems@cpu:qwen3-tiny" in latest and "1 Qwen3 serving row(s) fail" in card
