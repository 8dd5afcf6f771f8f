"""The serving bisection (`serving/bisect.py`): the search over a real predicate on operator subsets, and
end to end on the CPU: a FlagGems whose `rsqrt` is wrong (tests/faulty_flag_gems, registered into aten for
real) fails the accuracy gate of Qwen3 served by the hf engine, the bisection names `rsqrt` from FlagGems'
own call log, and serving again with it left off passes the gate."""

from __future__ import annotations

import importlib.util
import math
import os

import pytest
import torch

from portability.results.store import read_results
from portability.serving.bisect import find_culprits
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
  min_throughput_ratio: 0.05  # the gate under test is the logprob gate: tok/s on a shared box is noise
  timeouts: {run_s: 300}
"""

HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


@pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers is not installed (the hf serving engine)")
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
    assert first.returncode == 1, first.stderr[-3000:]  # a planted failure: the run says so
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
    assert again.returncode == 1, again.stderr[-3000:]  # the failing row is kept beside the new one
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


# -- bisection: a real predicate over operator subsets ------------------------------------------------
# A small two-layer network built from named operators; each operator has a reference implementation and
# a "backend" one. Some backend implementations are wrong; the predicate runs the network with the
# backend implementations switched on for exactly the subset and compares with the reference output.
def _good_ops() -> dict:
    return {
        "mm": torch.mm,
        "add": torch.add,
        "silu": torch.nn.functional.silu,
        "softmax": lambda x: torch.softmax(x, -1),
        "rms_norm": lambda x: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6),
        "mul": torch.mul,
        "exp": torch.exp,
        "tanh": torch.tanh,
    }


def _forward(ops: dict, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    h = ops["rms_norm"](ops["add"](ops["mm"](x, w), x))
    h = ops["mul"](ops["silu"](h), ops["tanh"](h))
    return ops["softmax"](ops["add"](ops["mm"](h, w), ops["exp"](h * 0.1)))


def _predicate(broken: dict, tol: float = 1e-4):
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(8, 16, generator=gen), torch.randn(16, 16, generator=gen) * 0.3
    expected = _forward(_good_ops(), x, w)
    calls = []

    def fails(subset: list[str]) -> bool:
        calls.append(subset)
        ops = {**_good_ops(), **{name: broken[name] for name in subset if name in broken}}
        return not torch.allclose(_forward(ops, x, w), expected, atol=tol, rtol=0)

    return fails, calls


def test_bisection_finds_independent_culprits():
    broken = {
        "softmax": lambda x: torch.softmax(x * 1.05, -1),  # a wrong scale
        "silu": lambda x: x * torch.sigmoid(x * 0.9),
    }
    ops = list(_good_ops())
    fails, calls = _predicate(broken)
    assert fails(ops) and not fails([])
    calls.clear()
    result = find_culprits(ops, fails, max_runs=64)
    assert result.complete and result.culprits == ["silu", "softmax"]
    assert result.runs == len(calls) <= 2 * 2 * math.ceil(math.log2(len(ops))) + 2


def test_bisection_finds_culprits_that_only_fail_together_and_respects_its_budget():
    # each error alone stays under the tolerance; together they exceed it
    broken = {"tanh": lambda x: torch.tanh(x) + 0.01, "mul": lambda a, b: torch.mul(a, b) + 0.01}
    ops = list(_good_ops())
    fails, _ = _predicate(broken, tol=4e-3)
    assert fails(ops) and not fails(["mul"]) and not fails(["tanh"]) and fails(["mul", "tanh"])
    result = find_culprits(ops, fails)
    assert result.complete and sorted(result.culprits) == ["mul", "tanh"]
    short = find_culprits(ops, _predicate(broken, tol=4e-3)[0], max_runs=2)
    assert not short.complete and short.runs == 2 and set(short.culprits) >= {"mul", "tanh"}
