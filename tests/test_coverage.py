"""Coverage of FlagGems' registrations is measured by dispatch, and shown in the scorecard."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import flag_gems_installed


@pytest.fixture(scope="module")
def coverage() -> dict:
    from conftest import run_cli

    proc = run_cli("coverage", "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.skipif(not flag_gems_installed(), reason="flag_gems is not installed")
def test_coverage_counts_registered_overloads_and_what_the_catalog_dispatches_to(coverage):
    data = coverage
    assert data["registered"] == 433  # flag-gems 5.0.2
    assert data["covered"] == len(data["covered_by"]) and data["covered"] + len(data["uncovered"]) == 433
    assert "softmax" in data["covered_by"]["_softmax"]  # torch.softmax dispatches to aten::_softmax
    assert "add" in data["covered_by"]["add.Tensor"]
    assert "rotary_embedding" in data["fused_specs"]
    assert not data["broken_specs"]
    # every overload the installed torch has is covered, except kernels with no CPU implementation and
    # aten::copysign, which in torch is copysign(Scalar a, Scalar b) -> float (no tensor reaches it);
    # see CPU_UNREACHABLE in kernels/aten/hand_internal.py
    assert data["covered"] >= 421
    assert "aten._grouped_mm" in data["covered_by"]["_grouped_mm"]
    cpu_less = {"_conv_depthwise2d", "_flash_attention_forward", "max_pool2d_backward", "copysign"}
    assert set(data["uncovered"]) - set(data["absent_from_torch"]) <= cpu_less
    assert {"scaled_softmax_forward", "nll_loss_nd_forward"} <= set(data["absent_from_torch"])
    if not torch.cuda.is_available():  # FlagGems cannot initialise here: its package's table, and why
        assert data["registry"] == "package"
        assert data["registry_note"].startswith("flag_gems cannot initialise on this host (RuntimeError: ")


def test_where_flag_gems_initialises_coverage_reads_its_live_registry_with_the_vendors_exclusions():
    """tests/stub_flag_gems stands in for flag_gems on a vendor that initialises and declares `abs` unused:
    the live registry has 3 of the table's 4 overloads, and the catalog covers all 3."""
    from conftest import ROOT, run_cli

    stub = ROOT / "tests" / "stub_flag_gems"
    proc = run_cli("coverage", "--json", env={"PYTHONPATH": f"{stub}{os.pathsep}{ROOT}"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["registry"] == "live"
    # the 5.0.2 shape has no all_registered_keys(): read through the registrar enable() made
    assert data["registry_note"] == "vendor sunrise, read through current_work_registrar"
    assert data["registered"] == 3 and data["uncovered"] == []
    assert set(data["covered_by"]) == {"add.Tensor", "mm", "topk"}


@pytest.mark.skipif(not flag_gems_installed(), reason="flag_gems is not installed")
def test_composite_in_place_out_backward_and_random_overloads_are_recorded(coverage):
    """Each operator class reaches its own overload: composite ones (decomposed before any dispatch mode
    sees them) included."""
    by = coverage["covered_by"]
    assert "aten.divide.Scalar" in by["divide.Scalar"]  # CompositeImplicitAutograd
    assert "aten.conv2d.padding" in by["conv2d.padding"]
    assert any(s.startswith("aten.") for s in by["add_.Tensor"])  # in-place
    assert "aten.cumsum.out" in by["cumsum.out"]  # out=
    assert "aten.gelu_backward" in by["gelu_backward"]  # autograd of gelu reaches gelu_backward
    assert "aten.native_layer_norm_backward" in by["native_layer_norm_backward"]
    assert "aten.randperm" in by["randperm"] and "aten.native_dropout" in by["native_dropout"]


@pytest.mark.skipif(not flag_gems_installed(), reason="flag_gems is not installed")
def test_coverage_command_names_what_is_uncovered(cli):
    proc = cli("coverage")
    assert proc.returncode == 0, proc.stderr
    first, *rest = proc.stdout.splitlines()
    assert first.startswith("FlagGems 5.0.2 registers 433 aten overloads; the catalog exercises ")
    start = next(i for i, line in enumerate(rest) if line.startswith("Uncovered ("))
    uncovered = [line.strip() for line in rest[start + 1 :] if line.startswith("  ")]
    # every uncovered overload with the reason no CPU call reaches it
    assert any(line.startswith("_conv_depthwise2d: ") and "CUDA only" in line for line in uncovered)
    assert not any(line.startswith("add.Tensor:") for line in uncovered)
    assert any(line.startswith("Specs derived from OpInfo for this FlagGems and torch: ") for line in rest)
    assert any(line.startswith("Fused functions (flag_gems.fused) with specs: ") for line in rest)
    if not torch.cuda.is_available():
        assert "read from the installed package's table: flag_gems cannot initialise" in proc.stdout
    assert any(
        line.startswith("Uncovered because torch ") and "scaled_softmax_forward" in line for line in rest
    )


@pytest.mark.skipif(not flag_gems_installed(), reason="flag_gems is not installed")
def test_a_run_with_a_flaggems_cell_writes_coverage_into_the_scorecard(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("run", "--backends", "flaggems", "--devices", "cpu", "--ops", "add", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    md = (out / "scorecard.md").read_text()
    cov = json.loads((out / "coverage.json").read_text())
    assert f"**{cov['covered']}/433**" in md and "uncovered overloads" in md
    derived = len(cov["opinfo_derived_specs"])
    assert derived > 0 and f"{derived} aten specs were derived from OpInfo" in md
    if not torch.cuda.is_available():
        assert "433** aten overloads FlagGems registers (the installed package's table;" in md
    # which FlagGems, and what each of its vendor backends declares (5.0.2's nvidia: add, cos, cumsum off)
    assert "FlagGems under test: **5.0.2**" in md and "### FlagGems: declared support per vendor" in md
    assert "| nvidia | cuda | – | 3 | – | – |" in md
