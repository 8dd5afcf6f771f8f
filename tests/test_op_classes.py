"""Operator classes (in-place, out=, backward, random, ties and order-free results), each judged by its own
contract: planted good and bad implementations from tests/fault_adapters/class_specs.py run through the real
command line on eager torch. Plus a backend's declared dtype support turning cases into `unsupported`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portability.distributions import Bernoulli, Normal, chi2_critical, ks_critical, ks_statistic

SPECS = {"PORTABILITY_SPECS": "tests/fault_adapters/class_specs.py"}


def rows_of(out: Path) -> list[dict]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "op"]


@pytest.fixture(scope="module")
def class_rows(tmp_path_factory) -> dict[str, list[dict]]:
    from conftest import run_cli

    matrix = tmp_path_factory.mktemp("m") / "matrix.yaml"
    matrix.write_text(
        "backends:\n  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}\n"
        "perf: {warmup: 1, repetitions: 3, budget_s: 0.1, timeout_s: 120}\n"
    )
    out = tmp_path_factory.mktemp("run")
    args = ("--out", str(out), "--tags", "planted", "--reruns", "0")  # the bad_* ops fail on purpose
    proc = run_cli("run", "--matrix", str(matrix), *args, env=SPECS)
    assert proc.returncode == 1, proc.stderr[-3000:]
    by_op: dict[str, list[dict]] = {}
    for r in rows_of(out):
        by_op.setdefault(r["op"], []).append(r)
    return by_op


def test_every_planted_good_implementation_passes_and_every_bad_one_fails(class_rows):
    assert len(class_rows) == 25
    for op, rows in class_rows.items():
        want = "pass" if op.startswith("good_") else "fail"
        assert {r["status"] for r in rows} == {want}, (op, rows)


@pytest.mark.parametrize(
    ("op", "reason"),
    [
        ("bad_inplace_returns_copy", "in-place op returned a new tensor instead of its mutated first input"),
        ("bad_inplace_writes_other", "input(s) at position [1] written"),
        ("bad_functional_writes_input", "input(s) at position [0] written"),
        ("bad_out_ignored", "out= variant ignored out= (the out tensor was not written)"),
        ("bad_out_not_returned", "out= variant did not return its out="),
        ("bad_backward", "element(s) outside atol"),
        ("bad_normal_mean", "not normal: Kolmogorov–Smirnov D="),
        ("bad_normal_unseeded", "two calls under the same seed gave different outputs"),
        ("bad_uniform_range", "outside the support [-2, 5] of uniform"),
        ("bad_bernoulli_p", "ones, expected 19661"),
        ("bad_topk_indices", "indices do not point at the returned values"),
        ("bad_unique_counts", "counts differ"),
        ("bad_nonzero_missing_row", "shape (141, 2) != reference (142, 2)"),
        ("bad_batch_norm_eval_output", "element(s) outside atol"),
        ("bad_batch_norm_train_stats", "element(s) outside atol"),
    ],
)
def test_each_contract_violation_is_named_in_the_reason(class_rows, op, reason):
    assert all(reason in r["reason"] for r in class_rows[op]), class_rows[op]


def test_goodness_of_fit_statistics_against_known_values():
    import torch

    # a perfect uniform grid has D = 1/(2n); the critical value shrinks as 1/sqrt(n)
    n = 1000
    grid = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    assert ks_statistic(grid, lambda x: x) == pytest.approx(0.5 / n)
    assert ks_critical(4 * n) == pytest.approx(ks_critical(n) / 2)
    assert chi2_critical(10, alpha=0.05) == pytest.approx(18.307, rel=0.01)  # tabulated 18.307
    gen = torch.Generator().manual_seed(0)
    good = torch.randn(1 << 14, generator=gen, dtype=torch.float64)
    assert Normal().check(good, (), {}) is None
    assert "Kolmogorov" in Normal(mean=0.1).check(good, (), {})
    assert Bernoulli(0.5).check((good > 0).double(), (), {}) is None
    assert "ones" in Bernoulli(0.4).check((good > 0).double(), (), {})


def test_dtypes_a_flaggems_vendor_declares_unsupported_are_unsupported_not_failures(tmp_path, cli):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "backends:\n"
        "  nobf16: {adapter: 'tests/fault_adapters/flaggems_vendor.py:NoBf16FlagGemsAdapter', devices: [cpu],"
        " dtypes: [fp32, bf16]}\n"
        "perf: {warmup: 1, repetitions: 3, budget_s: 0.1, timeout_s: 60}\n"
    )
    out = tmp_path / "run"
    proc = cli("run", "--matrix", str(matrix), "--out", str(out), "--ops", "add")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = rows_of(out)
    assert {r["dtype"]: r["status"] for r in rows if r["case"] == "decode 8x2560"} == {
        "fp32": "pass",
        "bf16": "unsupported",
    }
    assert all("declares no bf16 support" in r["reason"] for r in rows if r["dtype"] == "bf16")
    # FlagGems' call log (the stub's `add` logs as FlagGems' does) proves its function ran for each case
    assert all(r["routing"] == "launches" for r in rows if r["dtype"] == "fp32")
