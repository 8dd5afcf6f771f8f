"""Coverage of FlagGems' registrations is measured by dispatch, and shown in the scorecard."""

from __future__ import annotations

import json

import pytest
from conftest import flag_gems_installed


@pytest.mark.skipif(not flag_gems_installed(), reason="flag_gems is not installed")
def test_coverage_counts_registered_overloads_and_what_the_catalog_dispatches_to(cli):
    proc = cli("coverage", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["registered"] == 433  # flag-gems 5.0.2
    assert data["covered"] == len(data["covered_by"]) and data["covered"] + len(data["uncovered"]) == 433
    assert "softmax" in data["covered_by"]["_softmax"]  # torch.softmax dispatches to aten::_softmax
    assert "add" in data["covered_by"]["add.Tensor"]
    assert "upsample_bicubic2d" in " ".join(data["uncovered"])
    assert "rotary_embedding" in data["fused_specs"]


@pytest.mark.skipif(not flag_gems_installed(), reason="flag_gems is not installed")
def test_a_run_with_a_flaggems_cell_writes_coverage_into_the_scorecard(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("run", "--backends", "flaggems", "--devices", "cpu", "--ops", "add", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    md = (out / "scorecard.md").read_text()
    cov = json.loads((out / "coverage.json").read_text())
    assert f"**{cov['covered']}/433**" in md and "uncovered overloads" in md
