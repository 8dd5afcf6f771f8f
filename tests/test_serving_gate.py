"""The accuracy gate's pieces: the shipped model configs, the seeded synthetic checkpoint the gate serves,
and the logprob metrics (`serving/gate.py`, `serving/checkpoint.py`)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from portability.serving import model_config_dir
from portability.serving.checkpoint import parameter_shapes, synthetic_checkpoint
from portability.serving.gate import compare_logprobs, dense_to_positions, resolve_top_k, verdict

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
