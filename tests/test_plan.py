"""The plan: matrix.yaml -> cells (probed) -> case requests, with layered tolerances."""

from __future__ import annotations

from pathlib import Path

import pytest

from portability.catalog import all_tags, load_catalog
from portability.matrix.config import ConfigError, load_matrix
from portability.plan.cells import Filters, build_plan, select_operators
from portability.registry import is_adapter_reference

MATRIX = """\
version: 1
backends:
  torch: {adapter: torch, devices: [cpu, npu], dtypes: [fp32, bf16]}
  compiled: {adapter: inductor, devices: [cpu], dtypes: [fp32]}
operators:
  include: [softmax, mm, add]
  exclude: [add]
tolerances:
  dtypes: {bf16: {atol: 0.5}}
  backends: {compiled: {fp32: {atol: 0.25, rtol: 0.125}}}
  devices: {cpu: {fp32: {atol: 0.0625}}}
  cases: {"softmax": {fp32: {rtol: 0.03125}}}
perf: {warmup: 1, repetitions: 2}
"""


def load(tmp_path: Path, text: str = MATRIX):
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    catalog = load_catalog()
    return load_matrix(path, is_adapter_reference, tuple(catalog), tuple(sorted(all_tags())))


def test_cells_cross_backends_and_devices_and_report_why_unavailable(tmp_path):
    plan = build_plan(load(tmp_path), Filters())
    cells = {c.id: c for c in plan.cells}
    assert set(cells) == {"torch@cpu", "torch@npu", "compiled@cpu"}
    assert cells["torch@cpu"].status == "available"
    assert cells["torch@npu"].status == "unavailable"
    assert "torch_npu" in cells["torch@npu"].reason
    assert not plan.cases_of(cells["torch@npu"])  # nothing is planned on a cell that cannot run


def test_operator_selection_include_exclude_and_cli_filters(tmp_path):
    config = load(tmp_path)
    assert [s.name for s in select_operators(config, Filters())] == ["softmax", "mm"]
    assert [s.name for s in select_operators(config, Filters(ops=("mm",)))] == ["mm"]
    plan = build_plan(config, Filters(backends=("torch",), devices=("cpu",), dtypes=("bf16",)))
    assert {c.id for c in plan.cells} == {"torch@cpu"}
    assert plan.cases and {c.dtype for c in plan.cases} == {"bf16"}
    spec = load_catalog()["softmax"]
    want = {f"torch@cpu::softmax::{case.name}::bf16" for case in spec.cases if "bf16" in spec.dtypes}
    assert want <= {c.id for c in plan.cases}


def test_tolerances_are_layered_case_over_device_over_backend_over_dtype(tmp_path):
    config = load(tmp_path)
    # matrix case layer (rtol) wins; atol falls through to the device layer
    t = config.tolerance("softmax", "any", "compiled", "cpu", "fp32")
    assert (t.atol, t.rtol) == (0.0625, 0.03125)
    # device beats backend for atol; backend supplies rtol
    t = config.tolerance("mm", "any", "compiled", "cpu", "fp32")
    assert (t.atol, t.rtol) == (0.0625, 0.125)
    # backend layer where no device layer applies
    t = config.tolerance("mm", "any", "compiled", "npu", "fp32")
    assert (t.atol, t.rtol) == (0.25, 0.125)
    # the spec's own case/op tolerance sits between the matrix case layer and the device layer
    t = config.tolerance("mm", "any", "torch", "npu", "fp32", spec_case=(None, None), spec_op=(0.01, None))
    assert t.atol == 0.01
    # dtype override from matrix.yaml, rtol from the built-in default
    t = config.tolerance("mm", "any", "torch", "npu", "bf16")
    assert t.atol == 0.5 and t.rtol == pytest.approx(1.6e-2)


def test_schema_error_names_the_line_and_what_is_allowed(tmp_path):
    bad = MATRIX.replace("dtypes: [fp32]}", "dtypes: [fp8]}")
    with pytest.raises(ConfigError) as err:
        load(tmp_path, bad)
    assert str(err.value).startswith(f"{tmp_path / 'matrix.yaml'}:4: unknown dtype 'fp8', expected one of ")


def test_a_case_that_cannot_fit_in_device_memory_is_refused_with_the_figures():
    from portability.plan.cells import memory_refusal

    gib = 2**30
    assert memory_refusal(1 * gib, 80 * gib) is None
    why = memory_refusal(30 * gib, 80 * gib)
    assert why == "needs about 90.00 GiB (3x its 30.00 GiB of inputs) but the device has 80.00 GiB free"
    assert memory_refusal(30 * gib, None) is None  # a device that reports no memory refuses nothing


def test_plan_refuses_oversized_cases_on_this_host(tmp_path, monkeypatch):
    from portability import devices

    monkeypatch.setattr(devices, "memory_stats", lambda device: {"free": 1_000_000, "total": 2_000_000})
    plan = build_plan(load(tmp_path), Filters(backends=("torch",), devices=("cpu",)))
    refused = {req.case: why for req, why in plan.refused}
    assert refused and all("0.00 GiB free" in why for why in refused.values())
    mm = load_catalog()["mm"]
    big = next(c for c in mm.cases if c.name.startswith("prefill"))
    assert big.name in refused and big.name not in {c.case for c in plan.cases if c.op == "mm"}
    assert any(c.case == "odd 7x13x5" for c in plan.cases)  # small cases still run
