"""Any FlagGems, from any source: the FlagGems-facing code against flag-gems 5.0.2 (the test environment's),
5.3.4 (the shared wheel, installed into a folder put first on PYTHONPATH; skipped without the wheel) and
the stand-ins of tests/stub_flag_gems (5.0.2's shape) and tests/stub_flag_gems_53 (5.3's), on the CPU,
where the real FlagGems cannot initialise: its table, its API's features, its live registry, where it came
from (a source tree's commit), and what each of its vendor backends declares."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT, flag_gems_installed, run_cli, with_path

from portability.flaggems.features import of_source
from portability.flaggems.registry import Registration, registered_overloads, registrations
from portability.flaggems.source import install_args

STUB_53 = ROOT / "tests" / "stub_flag_gems_53"
VLLM_FL = ROOT / "tests" / "data" / "vllm_fl"
needs_502 = pytest.mark.skipif(not flag_gems_installed(), reason="flag_gems is not installed")


@needs_502
def test_each_release_registry_is_read_from_its_table_without_importing_it(flag_gems_534):
    assert len(registered_overloads()) == 433  # the environment's 5.0.2
    newer = registrations(flag_gems_534 / "flag_gems")
    assert len({r.key for r in newer}) == 869
    # 5.3.4 registers ("range", range_op) with `from flag_gems.ops import range as range_op`: only_enable
    # matches the function's own name
    assert Registration("range", "range", False) in newer
    assert any(r.conditional for r in newer)  # e.g. ("_scaled_mm", scaled_mm, lambda: torch_ge("2.5"))


@needs_502
def test_both_releases_have_every_feature_the_matrix_uses_and_a_lacking_one_says_what(
    flag_gems_534, tmp_path
):
    for root, version in ((None, "5.0.2"), (flag_gems_534 / "flag_gems", "5.3.4")):
        features = of_source(root)
        assert features.version == version
        assert features.missing("per_op_context", "only_enable", "enable_unused", "call_log") is None
    old = tmp_path / "flag_gems"
    old.mkdir()
    (old / "__init__.py").write_text('__version__ = "4.0"\n\ndef enable(lib=None, unused=None):\n    pass\n')
    lacking = of_source(old)
    assert lacking.has("enable_unused") and not lacking.has("call_log")
    assert lacking.missing("only_enable") == (
        "flag_gems 4.0 has no only_enable(include=...) (the bisection's subsets)"
    )


@needs_502
def test_coverage_follows_the_installed_flaggems_5_3_4(flag_gems_534):
    """The catalog's dispatchable specs run on the CPU against 5.3.4's table (869 overloads)."""
    proc = run_cli("coverage", "--json", env=with_path(flag_gems_534))
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    assert data["flag_gems"]["flag-gems"] == "5.3.4"
    assert data["registered"] == 869 and data["registry"] == "package"
    assert data["covered"] + len(data["uncovered"]) == 869 and data["covered"] == len(data["covered_by"])
    assert "add" in data["covered_by"]["add.Tensor"]
    new_in_534 = set(registered_overloads(flag_gems_534 / "flag_gems")) - set(registered_overloads())
    assert new_in_534 & (set(data["covered_by"]) | set(data["uncovered"])) == new_in_534
    assert data["registry_note"].startswith("flag_gems cannot initialise on this host")


def _git(tree: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(tree), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


@pytest.fixture
def flaggems_checkout(tmp_path: Path) -> Path:
    """A git checkout laid out as FlagGems' (src/flag_gems), holding the 5.3 stand-in, committed."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tree = tmp_path / "FlagGems"
    shutil.copytree(STUB_53 / "flag_gems", tree / "src" / "flag_gems")
    _git(tree, "init", "-q")
    _git(tree, "add", ".")
    _git(tree, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "stand-in")
    return tree


def test_a_source_tree_flaggems_is_named_by_its_commit_and_its_5_3_live_registry_is_read(
    flaggems_checkout, tmp_path
):
    """The 5.3 stand-in, from a git checkout: 5.3 has no flag_gems.runtime.register, so the recording
    registrar extends enable()'s own default and reads back through the public all_registered_keys(); the
    run's rows, coverage and scorecard header name the checkout's commit, and its uncommitted change."""
    head = _git(flaggems_checkout, "rev-parse", "HEAD")
    env = with_path(flaggems_checkout / "src")
    clean = json.loads(run_cli("vendors", "--json", env=env).stdout)
    assert clean["flag_gems"] == f"5.3.99, commit {head[:12]}"
    with (flaggems_checkout / "src" / "flag_gems" / "ops.py").open("a") as fh:
        fh.write("# a change not committed yet\n")
    out = tmp_path / "run"
    proc = run_cli(
        "run", "--backends", "flaggems", "--devices", "cpu", "--ops", "add", "--out", str(out), env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    coverage = json.loads((out / "coverage.json").read_text())
    assert (coverage["registry"], coverage["registry_note"]) == (
        "live",
        "vendor sunrise, read through all_registered_keys()",
    )
    # abs: the vendor's unused; arange.start_step: its condition does not hold
    assert coverage["registered"] == 2 and set(coverage["covered_by"]) == {"add.Tensor", "mm"}
    expected = {"flag-gems": "5.3.99", "flag-gems.commit": head, "flag-gems.dirty": "yes"}
    assert coverage["flag_gems"] == {**expected, "flag-gems.from": "tree"}
    (cell,) = json.loads((out / "scorecard.json").read_text())["cells"]
    assert cell["state"] == "unavailable"  # the stand-in's device is not the CPU: its versions still said
    assert expected.items() <= cell["versions"].items()
    md = (out / "scorecard.md").read_text()
    assert f"FlagGems under test: **5.3.99, commit {head[:12]}, with uncommitted changes**" in md


def test_install_args_take_every_source_form_and_refuse_in_one_line(tmp_path):
    wheel = tmp_path / "flag_gems-9.9-py3-none-any.whl"
    wheel.write_bytes(b"")
    (tmp_path / "FlagGems").mkdir()
    (tmp_path / "FlagGems" / "pyproject.toml").write_text("[project]\nname = 'flag-gems'\n")
    assert install_args(None) == ["flag-gems==5.0.2"]
    assert install_args("5.3.4") == ["flag-gems==5.3.4"] and install_args(">=5.3") == ["flag-gems>=5.3"]
    assert install_args("pypi") == ["flag-gems"] and install_args("installed") == []
    assert install_args(wheel.name, tmp_path) == [str(wheel)]
    assert install_args("FlagGems", tmp_path) == ["-e", str(tmp_path / "FlagGems")]
    url = "git+https://github.com/flagos-ai/FlagGems@v5.3.4"
    assert install_args(url) == [url]
    for bad, words in (
        ("latest-please", "'latest-please' is none of: pypi, installed"),
        ("missing.whl", "missing.whl: no such wheel"),
        (str(tmp_path), "not a source tree (no pyproject.toml or setup.py)"),
    ):
        with pytest.raises(ValueError, match="FlagGems source") as err:
            install_args(bad, tmp_path)
        assert words in str(err.value) and "\n" not in str(err.value)


@needs_502
def test_declared_support_of_5_3_4_reads_all_16_vendor_backends(flag_gems_534):
    proc = run_cli("vendors", "--json", env=with_path(flag_gems_534))
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    backends = flag_gems_534 / "flag_gems" / "runtime" / "backend"
    by = {v["vendor"]: v for v in data["vendors"]}
    assert set(by) == {p.name.lstrip("_") for p in backends.glob("_*") if (p / "__init__.py").exists()}
    assert len(by) == 16 and data["flag_gems"] == "5.3.4" and data["registered"] == 869
    assert by["tsingmicro"]["disabled_dtypes"] == ["fp64", "int64"] and by["nvidia"]["disabled_dtypes"] == []
    conditions = [u["condition"] for u in by["enflame"]["unused"]]  # per architecture
    assert len(conditions) == 2 and "arch_version == 300" in conditions
    ascend = by["ascend"]["unused"][0]
    assert "sort.stable" in ascend["overloads"]  # `sort_stable` is the function FlagGems registers it with
    assert "contiguous" in ascend["unmatched"]  # named, but no registered function has that name
    assert by["cambricon"]["black_list"] and not by["nvidia"]["black_list"]


@needs_502
def test_declared_support_of_5_0_2_with_a_vllm_plugin_fl_tree():
    proc = run_cli("vendors", "--json", "--vllm-fl", str(VLLM_FL))
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(proc.stdout)
    by = {v["vendor"]: v for v in data["vendors"]}
    assert len(by) == 14 and by["cambricon"]["disabled_dtypes"] == ["fp64"]  # 5.0.2: device.py's lists
    assert "add.Tensor" in by["nvidia"]["unused"][0]["overloads"]  # 5.0.2's nvidia leaves add/cos/cumsum
    (nvidia,) = by["nvidia"]["vllm_fl"]
    assert nvidia["origin"] == "nvidia.yaml" and nvidia["unmatched"] == ["flash_mla_with_kvcache"]
    assert nvidia["overloads"] and by["mthreads"]["vllm_fl"][0]["origin"] == "musa.yaml"
    assert data["vllm_fl_other"] == ["biren.yaml"]


def test_a_vllm_fl_path_without_configs_is_one_line_exit_2(tmp_path):
    proc = run_cli("vendors", "--vllm-fl", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line == f"portability: --vllm-fl: {tmp_path} has no vllm_fl/dispatch/config/*.yaml, " + (
        "expected a vllm-plugin-FL tree"
    )
