"""The overload -> OpInfo table follows the installed FlagGems and torch (kernels/aten/_opinfo_cache.py):
a checked-in table serves the FlagGems it was derived for, another FlagGems gets its own table derived
once and cached on disk under its key, and a changed key (another version, commit or set of registered
overloads) is derived again. Specs from the table are marked `opinfo-derived`. Deriving a real table
scans all of op_db (minutes on a loaded 2-core box), so the cache tests pass `load_table` a derivation
that records its calls; the tables themselves are checked by running their specs."""

from __future__ import annotations

import json
import shutil
import sys

import portability.kernels.aten.opinfo as opinfo
import pytest
from conftest import ROOT
from portability.kernels.aten import _opinfo_table_5_3_4
from portability.kernels.aten._opinfo_cache import CACHE_ENV, load_table

from portability.catalog import load_catalog

STUB = ROOT / "tests" / "stub_flag_gems"


def test_specs_from_the_table_are_marked_derived_and_hand_written_ones_are_not():
    catalog = load_catalog()
    derived = {name for name, spec in catalog.items() if opinfo.DERIVED_TAG in spec.tags}
    assert derived == {s.name for s in opinfo.SPECS}
    assert len(derived) >= 300
    hand = {name for name, spec in catalog.items() if "hand" in spec.tags}
    assert hand and not hand & derived
    assert opinfo.DERIVED.source.startswith("checked-in")  # 5.0.2 or no flag_gems: the default table


@pytest.fixture
def stub_flag_gems(tmp_path, monkeypatch):
    """A FlagGems of four registrations first on sys.path, an empty cache, and a way to register more."""
    package = tmp_path / "site" / "flag_gems"
    shutil.copytree(STUB / "flag_gems", package)
    monkeypatch.syspath_prepend(str(package.parent))
    for name in [m for m in sys.modules if m == "flag_gems" or m.startswith("flag_gems.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))

    def register(key: str) -> None:
        init = package / "__init__.py"
        init.write_text(
            init.read_text().replace('    ("topk", topk),\n', f'    ("topk", topk),\n    ("{key}", mm),\n')
        )

    return register


def test_a_new_flag_gems_gets_its_table_derived_once_then_cached(stub_flag_gems, tmp_path):
    derived: list[list[str]] = []

    def derive(pairs):
        derived.append(sorted(k for k, _ in pairs))
        return {k: {"registered": True} for k, _ in pairs}

    first = load_table(opinfo.CHECKED_IN, derive)
    assert derived == [["abs", "add.Tensor", "mm", "topk"]]
    assert first.source.startswith("derived in") and sorted(first.table) == derived[0]
    (path,) = (tmp_path / "cache" / "opinfo").glob("table-*.json")
    assert json.loads(path.read_text())["key"] == first.key
    again = load_table(opinfo.CHECKED_IN, derive)
    assert again.source == f"cache {path}" and again.table == first.table
    assert len(derived) == 1  # read back, not derived again

    stub_flag_gems("bmm")  # a pull request registers another overload: a new key
    changed = load_table(opinfo.CHECKED_IN, derive)
    assert len(derived) == 2 and "bmm" in changed.table
    assert changed.key["registry"] != first.key["registry"]
    assert len(list((tmp_path / "cache" / "opinfo").glob("table-*.json"))) == 2


def test_a_cache_file_under_another_key_is_not_used(stub_flag_gems, tmp_path):
    first = load_table(opinfo.CHECKED_IN, lambda pairs: {"stale": {}})
    (path,) = (tmp_path / "cache" / "opinfo").glob("table-*.json")
    data = json.loads(path.read_text())
    data["key"]["torch"] = "0.0.0"  # written by another torch
    path.write_text(json.dumps(data))
    fresh = load_table(opinfo.CHECKED_IN, lambda pairs: {"fresh": {}})
    assert first.table == {"stale": {}} and fresh.table == {"fresh": {}}


def test_the_checked_in_5_3_4_table_serves_flag_gems_5_3_4(flag_gems_5_3_4, cli, tmp_path):
    """With FlagGems 5.3.4 importable, the catalog takes the checked-in 5.3.4 table (nothing derived) and
    its specs, derived and hand-written, build and pass on torch@cpu."""
    only_534 = sorted(set(_opinfo_table_5_3_4.TABLE) - set(opinfo.CHECKED_IN["_opinfo_table"][1]))
    derived_534 = [f"aten.{k}" for k in only_534 if f"aten.{k}" not in opinfo.HAND][:4]
    hand_534 = ["aten.arccos_", "aten.less_equal.Scalar", "aten._fused_adam", "aten.median.dim_values"]
    fused_534 = ["add_rms_norm", "grouped_topk", "mhc_post", "fused_indexer_q_rope_quant"]
    env = {"PYTHONPATH": f"{flag_gems_5_3_4.parent}:{ROOT}", CACHE_ENV: str(tmp_path / "cache")}
    ops = ",".join(derived_534 + hand_534 + fused_534)
    out = tmp_path / "run"
    args = ("--backends", "torch", "--devices", "cpu", "--dtypes", "fp32,bf16", "--no-serving")
    proc = cli("run", "--ops", ops, *args, "--out", str(out), env={**env, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    ops_run = {r["op"] for r in rows if r.get("kind") == "op"}
    assert ops_run == set(ops.split(","))
    bad = [
        f"{r['op']} [{r['case']}] {r['dtype']}: {r['status']} {r['reason']}"
        for r in rows
        if r.get("kind") == "op" and r["status"] != "pass"
    ]
    assert not bad, "\n".join(bad)
    assert not (tmp_path / "cache").exists()  # the checked-in table served: nothing derived
