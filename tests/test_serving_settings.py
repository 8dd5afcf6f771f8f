"""The `serving:` block of matrix.yaml (`serving/settings.py`): one-line errors, defaults, and values
reaching the engines."""

from __future__ import annotations

import pytest

from portability.matrix.config import ConfigError, load_matrix
from portability.registry import is_adapter_reference
from portability.serving.settings import ServingSettings, validate_serving
from tests.conftest import serving_settings


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
        ({"min_throughput_ratio": 0}, "min_throughput_ratio is 0, expected a number > 0"),
        ({"allow_mismatched_pair": "yes"}, "allow_mismatched_pair is 'yes', expected true or false"),
        ({"tensor_parallel_size": [1, 0]}, "tensor_parallel_size is [1, 0], expected a positive integer or"),
        (
            {"tensor_parallel_size": [2, 2]},
            "tensor_parallel_size lists a size twice, expected each size once",
        ),
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


def test_throughput_gate_pairing_profile_and_tensor_parallel_defaults_and_values():
    s = serving_settings({"engines": ["hf"]})
    assert (s.min_throughput_ratio, s.allow_mismatched_pair, s.profile, s.tensor_parallel_size) == (
        0.8,
        False,
        True,
        [1],
    )
    s = serving_settings(
        {
            "min_throughput_ratio": 0.5,
            "allow_mismatched_pair": True,
            "profile": False,
            "tensor_parallel_size": 2,
        }
    )
    assert (s.min_throughput_ratio, s.allow_mismatched_pair, s.profile, s.tensor_parallel_size) == (
        0.5,
        True,
        False,
        [2],
    )
    assert serving_settings({"tensor_parallel_size": [1, 2]}).tensor_parallel_size == [1, 2]
