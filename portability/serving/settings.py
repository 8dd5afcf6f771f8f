"""The `serving:` block of matrix.yaml, checked key by key into a `ServingSettings`.

`validate_serving(block, error)` receives the block as a plain dict and calls
`error(path, what_is_wrong, expected)` (which raises) on the first mistake; `path` is the tuple of keys
below `serving`. An absent or empty block returns None: no serving runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from portability.serving.engines import ENGINES

THROUGHPUT_WEIGHTS = ("dummy", "synthetic")
GATE_WEIGHTS = ("synthetic",)
DTYPES = ("auto", "float32", "bfloat16", "float16")

# Keys of issue #18 (pairing, throughput gate, step profile, tensor parallelism), checked apart in
# `_validate_issue18_keys` so that validate_serving's move onto the matrix Validator can take them as a block.
ISSUE18_KEYS = ("min_throughput_ratio", "allow_mismatched_pair", "profile", "tensor_parallel_size")

KEYS = (
    "engines",
    "backends",
    "model",
    "weights",
    "input_len",
    "output_len",
    "num_prompts",
    "concurrency",
    "max_num_seqs",
    "kv_cache_memory_bytes",
    "gpu_memory_utilization",
    "enforce_eager",
    "cuda_graphs",
    "dtype",
    "gate",
    "timeout_s",
    "timeouts",
    "online",
    "bisect",
    "bisect_max_runs",
    "bisect_budget_s",
    "bisect_ops",
    "flaggems_exclude",
    "seed",
    *ISSUE18_KEYS,
)
GATE_KEYS = ("max_abs_logprob_diff", "mean_kl", "prompts", "prompt_len", "top_k", "dtype")
WEIGHTS_KEYS = ("throughput", "gate")
TIMEOUT_KEYS = ("run_s", "server_start_s")


@dataclass
class GateSettings:
    max_abs_logprob_diff: float = 0.05
    mean_kl: float = 1e-3
    prompts: int = 4
    prompt_len: int = 64
    #: logprobs per position compared; 0 = the whole vocabulary up to 32768 tokens, else 256
    top_k: int = 0
    #: the gate runs the engine in this dtype, against the reference in float32
    dtype: str = "float32"


@dataclass
class ServingSettings:
    engines: list[str] = field(default_factory=lambda: ["vllm", "hf"])
    backends: list[str] = field(default_factory=lambda: ["torch", "flaggems"])
    #: a shipped config (models/<name>/config.json) or an absolute path to real weights
    model: str = "qwen3-tiny"
    throughput_weights: str = "dummy"
    gate_weights: str = "synthetic"
    input_len: int = 512
    output_len: int = 128
    num_prompts: int = 64
    #: concurrent requests of the online benchmark
    concurrency: int = 8
    max_num_seqs: int = 64
    kv_cache_memory_bytes: int = 2 * 2**30
    #: vLLM's start-up check wants this share of the device free even when the KV cache size is given;
    #: lower it to serve beside another job on the same GPU (None: vLLM's default)
    gpu_memory_utilization: float | None = None
    enforce_eager: bool = True
    #: serving dtype of the throughput runs; auto = float32 on cpu, bfloat16 on accelerators
    dtype: str = "auto"
    gate: GateSettings = field(default_factory=GateSettings)
    timeout_s: float = 900.0
    server_start_timeout_s: float = 600.0
    online: bool = True
    bisect: bool = True
    bisect_max_runs: int = 24
    #: wall-clock budget of one bisection: past it the smallest failing subset seen is reported
    bisect_budget_s: float = 1800.0
    #: search only these FlagGems functions (e.g. an earlier bisection's suspects); empty: every
    #: FlagGems function registered for the operators the model runs
    bisect_ops: list[str] = field(default_factory=list)
    #: FlagGems functions left off in every flaggems cell (`flag_gems.enable(unused=...)`), e.g. an
    #: earlier bisection's culprits, to measure the rest of FlagGems; the bisection searches the others
    flaggems_exclude: list[str] = field(default_factory=list)
    seed: int = 0
    #: the throughput gate: a cell passes only at >= this share of the torch cell's output tok/s (same
    #: engine, mode, device, tensor parallelism and settings), beside the logprob gate
    min_throughput_ratio: float = 0.8
    #: serve vllm-plugin-FL even when the installed vLLM is not the one its branch declares (labelled)
    allow_mismatched_pair: bool = False
    #: profile one steady-state prefill and decode step per cell (engines that can) and attribute the gap
    profile: bool = True
    #: tensor-parallel sizes, crossed with the cells
    tensor_parallel_size: list[int] = field(default_factory=lambda: [1])

    @property
    def real_weights(self) -> bool:
        return self.model.startswith("/")

    @property
    def weights_label(self) -> str:
        if self.real_weights:
            return "real"
        return f"{self.throughput_weights} + {self.gate_weights}"

    @property
    def model_name(self) -> str:
        return self.model.rstrip("/").rsplit("/", 1)[-1] if self.real_weights else self.model


Error = Callable[[tuple, str, str], NoReturn]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(block: dict, key: str, error: Error, path: tuple = (), minimum: int = 1) -> int | None:
    if key not in block:
        return None
    value = block[key]
    if not _is_int(value) or value < minimum:
        error((*path, key), f"{key} is {value!r}", "a positive integer" if minimum else "an integer >= 0")
    return value


def _positive_number(block: dict, key: str, error: Error, path: tuple = ()) -> float | None:
    if key not in block:
        return None
    value = block[key]
    if not _is_number(value) or not value > 0 or value != value:
        error((*path, key), f"{key} is {value!r}", "a number > 0")
    return float(value)


def _bool(block: dict, key: str, error: Error) -> bool | None:
    if key not in block:
        return None
    if not isinstance(block[key], bool):
        error((key,), f"{key} is {block[key]!r}", "true or false")
    return block[key]


def _mapping(block: dict, key: str, keys: tuple[str, ...], error: Error) -> dict:
    value = block.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        error((key,), f"{key} is {value!r}", f"a mapping with keys {', '.join(keys)}")
    for sub in value:
        if sub not in keys:
            error((key, sub), f"unknown key '{sub}' in serving.{key}", f"one of {', '.join(keys)}")
    return value


def _names(
    block: dict, key: str, allowed: tuple[str, ...] | None, what: str, error: Error
) -> list[str] | None:
    if key not in block:
        return None
    value = block[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        error((key,), f"{key} is {value!r}", "a non-empty list of names")
    for i, v in enumerate(value):
        if allowed and v not in allowed:
            error((key, i), f"unknown {what} '{v}'", f"one of {', '.join(allowed)}")
    if len(set(value)) != len(value):
        error((key,), f"{key} lists a name twice", "each name once")
    return list(value)


def validate_serving(block: dict[str, Any], error: Error) -> ServingSettings | None:
    """Check the `serving:` block; an absent/empty block means no serving (None)."""
    if not block:
        return None
    if not isinstance(block, dict):
        error((), f"serving is {block!r}", "a mapping")
    for key in block:
        if key not in KEYS:
            error((key,), f"unknown key '{key}' in serving", f"one of {', '.join(KEYS)}")
    s = ServingSettings()
    if (v := _names(block, "engines", ENGINES, "engine", error)) is not None:
        s.engines = v
    if (v := _names(block, "backends", None, "backend", error)) is not None:
        s.backends = v
    if "model" in block:
        from portability.serving import MODELS_DIR

        model = block["model"]
        shipped = sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").exists())
        if not isinstance(model, str) or not (model in shipped or model.startswith("/")):
            error(
                ("model",),
                f"unknown model {model!r}",
                f"one of {', '.join(shipped)}, or an absolute path to a directory with real weights",
            )
        s.model = model
    weights = _mapping(block, "weights", WEIGHTS_KEYS, error)
    for key, allowed in (("throughput", THROUGHPUT_WEIGHTS), ("gate", GATE_WEIGHTS)):
        if key in weights:
            if weights[key] not in allowed:
                error(("weights", key), f"weights.{key} is {weights[key]!r}", f"one of {', '.join(allowed)}")
            setattr(s, f"{key}_weights", weights[key])
    for key in ("input_len", "output_len", "num_prompts", "concurrency", "max_num_seqs", "bisect_max_runs"):
        if (v := _positive_int(block, key, error)) is not None:
            setattr(s, key, v)
    if (v := _positive_int(block, "kv_cache_memory_bytes", error)) is not None:
        s.kv_cache_memory_bytes = v
    if (v := _positive_number(block, "gpu_memory_utilization", error)) is not None:
        if v > 1:
            error(("gpu_memory_utilization",), f"gpu_memory_utilization is {v!r}", "a share in (0, 1]")
        s.gpu_memory_utilization = v
    if (v := _positive_int(block, "seed", error, minimum=0)) is not None:
        s.seed = v
    eager, graphs = _bool(block, "enforce_eager", error), _bool(block, "cuda_graphs", error)
    if eager is not None and graphs is not None and eager == graphs:
        error(
            ("cuda_graphs",),
            f"enforce_eager: {str(eager).lower()} contradicts cuda_graphs: {str(graphs).lower()}",
            "one of the two (cuda_graphs is the opposite of enforce_eager)",
        )
    if eager is not None:
        s.enforce_eager = eager
    elif graphs is not None:
        s.enforce_eager = not graphs
    if "dtype" in block and block["dtype"] not in DTYPES:
        error(("dtype",), f"dtype is {block['dtype']!r}", f"one of {', '.join(DTYPES)}")
    s.dtype = block.get("dtype", s.dtype)
    for key in ("online", "bisect"):
        if (v := _bool(block, key, error)) is not None:
            setattr(s, key, v)
    if (v := _positive_number(block, "timeout_s", error)) is not None:
        s.timeout_s = v
    if (v := _positive_number(block, "bisect_budget_s", error)) is not None:
        s.bisect_budget_s = v
    for key in ("bisect_ops", "flaggems_exclude"):
        if key in block:
            ops = block[key]
            if not isinstance(ops, list) or not ops or not all(isinstance(o, str) and o for o in ops):
                error((key,), f"{key} is {ops!r}", "a non-empty list of FlagGems function names")
            setattr(s, key, list(dict.fromkeys(ops)))
    if both := sorted(set(s.bisect_ops) & set(s.flaggems_exclude)):
        error(
            ("bisect_ops",),
            f"bisect_ops names {', '.join(both)}, which flaggems_exclude leaves off",
            "each FlagGems function in at most one of the two",
        )
    timeouts = _mapping(block, "timeouts", TIMEOUT_KEYS, error)
    if (v := _positive_number(timeouts, "run_s", error, ("timeouts",))) is not None:
        s.timeout_s = v
    if (v := _positive_number(timeouts, "server_start_s", error, ("timeouts",))) is not None:
        s.server_start_timeout_s = v
    gate = _mapping(block, "gate", GATE_KEYS, error)
    for key in ("max_abs_logprob_diff", "mean_kl"):
        if (v := _positive_number(gate, key, error, ("gate",))) is not None:
            setattr(s.gate, key, v)
    for key in ("prompts", "prompt_len"):
        if (v := _positive_int(gate, key, error, ("gate",))) is not None:
            setattr(s.gate, key, v)
    if (v := _positive_int(gate, "top_k", error, ("gate",), minimum=0)) is not None:
        s.gate.top_k = v
    if "dtype" in gate:
        if gate["dtype"] not in DTYPES[1:]:
            error(("gate", "dtype"), f"dtype is {gate['dtype']!r}", f"one of {', '.join(DTYPES[1:])}")
        s.gate.dtype = gate["dtype"]
    if s.gate.prompt_len < 2:
        error(("gate", "prompt_len"), f"prompt_len is {s.gate.prompt_len}", "at least 2 (one prediction)")
    _validate_issue18_keys(block, s, error)
    return s


def _validate_issue18_keys(block: dict[str, Any], s: ServingSettings, error: Error) -> None:
    """min_throughput_ratio, allow_mismatched_pair, profile, tensor_parallel_size."""
    if (v := _positive_number(block, "min_throughput_ratio", error)) is not None:
        s.min_throughput_ratio = v
    for key in ("allow_mismatched_pair", "profile"):
        if (v := _bool(block, key, error)) is not None:
            setattr(s, key, v)
    if "tensor_parallel_size" in block:
        sizes = block["tensor_parallel_size"]
        sizes = [sizes] if _is_int(sizes) else sizes
        if not isinstance(sizes, list) or not sizes or not all(_is_int(n) and n >= 1 for n in sizes):
            error(
                ("tensor_parallel_size",),
                f"tensor_parallel_size is {block['tensor_parallel_size']!r}",
                "a positive integer or a non-empty list of them (e.g. [1, 2])",
            )
        if len(set(sizes)) != len(sizes):
            error(("tensor_parallel_size",), "tensor_parallel_size lists a size twice", "each size once")
        s.tensor_parallel_size = list(sizes)
