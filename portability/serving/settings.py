"""The `serving:` block of matrix.yaml, checked key by key into a `ServingSettings`.

`validate_serving(block, error)` receives the block as a plain dict and calls
`error(path, what_is_wrong, expected)` (which raises) on the first mistake; `path` is the tuple of keys
below `serving`. An absent or empty block returns None: no serving runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

from portability.matrix.yaml_lines import Validator
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
COUNTS = ("input_len", "output_len", "num_prompts", "concurrency", "max_num_seqs", "bisect_max_runs")


def validate_serving(block: dict[str, Any], error: Error) -> ServingSettings | None:
    """Check the `serving:` block with matrix.yaml's Validator (errors go to `error(path, what,
    expected)`, `path` below `serving`); an absent/empty block means no serving (None)."""
    if not block:
        return None
    v = Validator.reporting_to(error, prefix=("serving",))
    top = ("serving",)
    v.mapping(block, top, KEYS)
    s = ServingSettings()
    if "engines" in block:
        s.engines = v.str_list(block["engines"], (*top, "engines"), ENGINES, "engine", strict=True)
    if "backends" in block:
        s.backends = v.str_list(block["backends"], (*top, "backends"), None, "backend", strict=True)
    if "model" in block:
        s.model = _model(v, block["model"])
    weights = v.mapping(block.get("weights") or {}, (*top, "weights"), WEIGHTS_KEYS)
    for key, allowed in (("throughput", THROUGHPUT_WEIGHTS), ("gate", GATE_WEIGHTS)):
        if key in weights:
            value = v.choice(weights[key], (*top, "weights", key), allowed, f"weights.{key}")
            setattr(s, f"{key}_weights", value)
    for key in (*COUNTS, "kv_cache_memory_bytes"):
        if key in block:
            setattr(s, key, int(_count(v, block[key], (*top, key))))
    if "gpu_memory_utilization" in block:
        s.gpu_memory_utilization = float(
            v.number(
                block["gpu_memory_utilization"],
                (*top, "gpu_memory_utilization"),
                allow_zero=False,
                maximum=1,
                expected="a share in (0, 1]",
            )
        )
    if "seed" in block:
        s.seed = int(_count(v, block["seed"], (*top, "seed"), minimum=0))
    _graphs(v, block, s)
    if "dtype" in block:
        s.dtype = v.choice(block["dtype"], (*top, "dtype"), DTYPES)
    for key in ("online", "bisect"):
        if key in block:
            setattr(s, key, v.boolean(block[key], (*top, key)))
    for key, attr in (("timeout_s", "timeout_s"), ("bisect_budget_s", "bisect_budget_s")):
        if key in block:
            setattr(s, attr, _seconds(v, block[key], (*top, key)))
    _function_lists(v, block, s)
    timeouts = v.mapping(block.get("timeouts") or {}, (*top, "timeouts"), TIMEOUT_KEYS)
    for key, attr in (("run_s", "timeout_s"), ("server_start_s", "server_start_timeout_s")):
        if key in timeouts:
            setattr(s, attr, _seconds(v, timeouts[key], (*top, "timeouts", key)))
    _gate(v, v.mapping(block.get("gate") or {}, (*top, "gate"), GATE_KEYS), s.gate)
    _issue18_keys(v, block, s)
    return s


def _count(v: Validator, value: Any, path: tuple, minimum: int = 1) -> float:
    expected = "a positive integer" if minimum else "an integer >= 0"
    if not isinstance(value, int) or isinstance(value, bool):
        v.error(path, f"{path[-1]} is {value!r}", expected)
    return v.number(value, path, minimum, integer=True, expected=expected)


def _seconds(v: Validator, value: Any, path: tuple) -> float:
    """A positive number (seconds, thresholds); named by its value as written, e.g. `mean_kl is 'small'`."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        v.error(path, f"{path[-1]} is {value!r}", "a number > 0")
    return float(v.number(value, path, allow_zero=False, expected="a number > 0"))


def _model(v: Validator, model: Any) -> str:
    from portability.serving import MODELS_DIR

    shipped = sorted(p.name for p in MODELS_DIR.iterdir() if (p / "config.json").exists())
    if not isinstance(model, str) or not (model in shipped or model.startswith("/")):
        close = v.one_of(model, shipped)
        v.error(
            ("serving", "model"),
            f"unknown model {model!r}",
            f"{close}, or an absolute path to a directory with real weights",
        )
    return model


def _graphs(v: Validator, block: dict[str, Any], s: ServingSettings) -> None:
    """enforce_eager and its opposite cuda_graphs: either may be given, not both contradicting."""
    eager = (
        v.boolean(block["enforce_eager"], ("serving", "enforce_eager")) if "enforce_eager" in block else None
    )
    graphs = v.boolean(block["cuda_graphs"], ("serving", "cuda_graphs")) if "cuda_graphs" in block else None
    if eager is not None and graphs is not None and eager == graphs:
        v.error(
            ("serving", "cuda_graphs"),
            f"enforce_eager: {str(eager).lower()} contradicts cuda_graphs: {str(graphs).lower()}",
            "one of the two (cuda_graphs is the opposite of enforce_eager)",
        )
    if eager is not None:
        s.enforce_eager = eager
    elif graphs is not None:
        s.enforce_eager = not graphs


def _function_lists(v: Validator, block: dict[str, Any], s: ServingSettings) -> None:
    for key in ("bisect_ops", "flaggems_exclude"):
        if key in block:
            ops = block[key]
            if not isinstance(ops, list) or not ops or not all(isinstance(o, str) and o for o in ops):
                v.error(("serving", key), f"{key} is {ops!r}", "a non-empty list of FlagGems function names")
            setattr(s, key, list(dict.fromkeys(ops)))
    if both := sorted(set(s.bisect_ops) & set(s.flaggems_exclude)):
        v.error(
            ("serving", "bisect_ops"),
            f"bisect_ops names {', '.join(both)}, which flaggems_exclude leaves off",
            "each FlagGems function in at most one of the two",
        )


def _gate(v: Validator, gate: dict[str, Any], out: GateSettings) -> None:
    path = ("serving", "gate")
    for key in ("max_abs_logprob_diff", "mean_kl"):
        if key in gate:
            setattr(out, key, _seconds(v, gate[key], (*path, key)))
    for key in ("prompts", "prompt_len"):
        if key in gate:
            setattr(out, key, int(_count(v, gate[key], (*path, key))))
    if "top_k" in gate:
        out.top_k = int(_count(v, gate["top_k"], (*path, "top_k"), minimum=0))
    if "dtype" in gate:
        out.dtype = v.choice(gate["dtype"], (*path, "dtype"), DTYPES[1:])
    if out.prompt_len < 2:
        v.error((*path, "prompt_len"), f"prompt_len is {out.prompt_len}", "at least 2 (one prediction)")


def _issue18_keys(v: Validator, block: dict[str, Any], s: ServingSettings) -> None:
    """min_throughput_ratio, allow_mismatched_pair, profile, tensor_parallel_size."""
    top = ("serving",)
    if "min_throughput_ratio" in block:
        s.min_throughput_ratio = _seconds(v, block["min_throughput_ratio"], (*top, "min_throughput_ratio"))
    for key in ("allow_mismatched_pair", "profile"):
        if key in block:
            setattr(s, key, v.boolean(block[key], (*top, key)))
    if "tensor_parallel_size" in block:
        raw = block["tensor_parallel_size"]
        sizes = [raw] if isinstance(raw, int) and not isinstance(raw, bool) else raw
        ok = isinstance(sizes, list) and sizes
        if not ok or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
            v.error(
                (*top, "tensor_parallel_size"),
                f"tensor_parallel_size is {raw!r}",
                "a positive integer or a non-empty list of them (e.g. [1, 2])",
            )
        if len(set(sizes)) != len(sizes):
            v.error(
                (*top, "tensor_parallel_size"), "tensor_parallel_size lists a size twice", "each size once"
            )
        s.tensor_parallel_size = list(sizes)
