"""matrix.yaml: load, validate, and report every mistake as one `FILE:LINE: what, expected what` line.

This module holds the matrix's schema, hand-written rather than JSON-Schema based because the errors must
name the file line and say what is allowed, in one line: the dataclasses a loaded matrix is made of
(`MatrixConfig` and its backends, operator selection, layered tolerances and perf settings) and
`load_matrix`, which checks every section of the file. Reading the YAML with a line number for every key,
and the checks' building blocks, are in `portability.matrix.yaml_lines`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from portability.devices import DEVICE_TYPES
from portability.flaggems.source import SOURCE_FORMS, source_problem
from portability.matrix.yaml_lines import ConfigError, Path_, Validator, kind_of, read_yaml
from portability.perf.cache import CACHE_SETTINGS
from portability.registry import BUILTIN_ADAPTERS
from portability.spec import DEFAULT_TOLERANCE, DTYPES

__all__ = [
    "BackendConfig",
    "ConfigError",
    "MatrixConfig",
    "OperatorSelection",
    "PerfSettings",
    "Tolerance",
    "load_matrix",
]


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float


@dataclass
class BackendConfig:
    name: str
    adapter: str
    devices: list[str]
    dtypes: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class OperatorSelection:
    include: str | list[str] = "all"
    tags: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)


@dataclass
class PerfSettings:
    warmup: int = 3
    repetitions: int = 20
    budget_s: float = 2.0  # CPU: stop timing one case after this long (at least 3 repetitions)
    timeout_s: float = 300.0  # one case, compile/autotune included
    workers: int | str = "auto"  # pytest-xdist workers per cell; auto: one per device (1 on cpu)
    cache: str = "auto"  # cold | warm | auto (cold for memory-bound cases): see portability/perf/cache.py
    repeat: int = 1  # run each case's timing this many times and report its coefficient of variation


@dataclass
class MatrixConfig:
    path: str
    backends: dict[str, BackendConfig]
    operators: OperatorSelection
    tolerances: dict[str, dict[str, dict[str, Tolerance]]]
    perf: PerfSettings
    serving: Any  # ServingSettings (or None: no serving block) once validated
    line_of: Callable[[Path_], int] = field(repr=False, default=lambda p: 1)
    serving_block: dict[str, Any] = field(default_factory=dict)  # as written, for command-line overrides
    profile: str = "auto"  # auto | quick | full (portability/plan/profile.py); --profile overrides it

    def tolerance(
        self,
        op: str,
        case: str,
        backend: str,
        device_type: str,
        dtype: str,
        spec_case: tuple[float | None, float | None] = (None, None),
        spec_op: tuple[float | None, float | None] = (None, None),
    ) -> Tolerance:
        """Layered: matrix case > spec case > spec op > device > backend > dtype default."""
        t = self.tolerances
        layers: list[tuple[float | None, float | None]] = []
        for key in (f"{op}/{case}", op):
            hit = t["cases"].get(key, {}).get(dtype)
            if hit:
                layers.append((hit.atol, hit.rtol))
        layers += [spec_case, spec_op]
        for section, key in (("devices", device_type), ("backends", backend)):
            hit = t[section].get(key, {}).get(dtype)
            if hit:
                layers.append((hit.atol, hit.rtol))
        base = t["dtypes"].get("*", {}).get(dtype) or Tolerance(*DEFAULT_TOLERANCE[dtype])
        layers.append((base.atol, base.rtol))
        atol = next(a for a, _ in layers if a is not None)
        rtol = next(r for _, r in layers if r is not None)
        return Tolerance(atol, rtol)


# --- validation ------------------------------------------------------------------------------------

TOP_KEYS = ("version", "profile", "backends", "operators", "tolerances", "perf", "serving")
PROFILES = ("auto", "quick", "full")  # portability/plan/profile.py says what each runs
# pytest-timeout's watchdog thread cannot wait much longer than a day (1e300 s overflows it): one day bounds
# a case, compile and autotune included, both in perf.timeout_s and in --case-timeout.
MAX_CASE_TIMEOUT_S = 86_400
BACKEND_KEYS = ("adapter", "devices", "dtypes", "options", "env")
# the flaggems adapter's options: what `nox -s matrix` installs, and a vllm-plugin-FL tree whose
# per-vendor blacklists join the scorecard's declared-support view
FLAGGEMS_OPTIONS = ("source", "vllm_fl")


def load_matrix(
    path: str | Path,
    adapters: tuple[str, ...] | Callable[[str], bool],
    operators: Sequence[str] | Mapping[str, Sequence[str]],
    tags: tuple[str, ...],
    validate_serving: Callable[[dict[str, Any], Callable[..., NoReturn]], Any] | None = None,
) -> MatrixConfig:
    """Read and validate a matrix file. Raises ConfigError with a one-line message on any mistake.
    `operators`: the catalog's operator names, or a mapping of each to its case names (then the case
    names of `tolerances.cases` keys are checked too)."""
    path = Path(path)
    file = str(path)  # as the user wrote it: "matrix.yaml:12: ..." for the default
    data, lines = read_yaml(path, file)
    v = Validator(file, lines)
    top = v.mapping(data, (), TOP_KEYS)
    if "version" in top and top["version"] != 1:
        v.error(("version",), f"version is {top['version']!r}", "1")
    if "backends" not in top:
        v.error((), "no 'backends' key", "a 'backends' mapping naming at least one backend")
    backends = _backends(v, top["backends"], adapters, path.parent)
    ops = _operators(v, top.get("operators", {}), tuple(operators), tags)
    tolerances = _tolerances(v, top.get("tolerances", {}), backends, operators)
    perf = _perf(v, top.get("perf", {}))
    profile = top.get("profile", "auto")
    if profile not in PROFILES:
        v.error(("profile",), f"profile is {kind_of(profile)}", v.one_of(profile, PROFILES))
    block = top.get("serving", {}) or {}
    v.mapping(block, ("serving",))
    serving: Any = block
    if validate_serving is not None:
        serving = validate_serving(block, lambda p, what, expected: v.error(("serving", *p), what, expected))
    return MatrixConfig(file, backends, ops, tolerances, perf, serving, v.line, dict(block), profile)


def _adapter_file(adapter: str, matrix_dir: Path) -> str:
    """`file.py:Class` with a relative path means the file beside the matrix (an older matrix may mean
    the working directory: used when only that exists); made absolute so every process finds it."""
    module, _, attr = adapter.rpartition(":")
    if not module.endswith(".py") or Path(module).is_absolute():
        return adapter
    beside = matrix_dir / module
    chosen = beside if beside.is_file() or not Path(module).is_file() else Path(module)
    return f"{chosen.resolve()}:{attr}"


def _backends(
    v: Validator, value: Any, adapters: tuple[str, ...] | Callable[[str], bool], matrix_dir: Path
) -> dict[str, BackendConfig]:
    block = v.mapping(value, ("backends",))
    if not block:
        v.error(("backends",), "no backend declared", "at least one backend")
    out: dict[str, BackendConfig] = {}
    for name, body in block.items():
        p = ("backends", name)
        if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
            v.error(p, f"backend name {name!r} is not a simple name", "letters, digits, '-' or '_'")
        body = v.mapping(body, p, BACKEND_KEYS)
        adapter = body.get("adapter", name)
        known = adapters(adapter) if callable(adapters) else adapter in adapters
        if not isinstance(adapter, str) or not known:
            names = ", ".join(sorted(BUILTIN_ADAPTERS))
            v.error(
                (*p, "adapter"),
                f"unknown adapter {adapter!r}",
                f"one of {names}, an installed plugin's name, or 'module:Class' / 'file.py:Class'",
            )
        adapter = _adapter_file(adapter, matrix_dir)
        devices = v.str_list(body.get("devices", ["cpu"]), (*p, "devices"), what="device")
        for i, dev in enumerate(devices):
            dtype, _, index = dev.partition(":")
            if dtype not in DEVICE_TYPES or (index and not index.isdigit()):
                v.error(
                    (*p, "devices", i),
                    f"unknown device '{dev}'",
                    f"a device type ({', '.join(DEVICE_TYPES)}) optionally with ':N'",
                )
        if len(set(devices)) != len(devices):
            dup = next(d for d in devices if devices.count(d) > 1)
            v.error(
                (*p, "devices"),
                f"device '{dup}' listed twice (duplicate cell {name}@{dup})",
                "each device once",
            )
        dtypes = v.str_list(
            body.get("dtypes", ["fp32", "fp16", "bf16"]), (*p, "dtypes"), tuple(DTYPES), "dtype"
        )
        options = v.mapping(body.get("options", {}) or {}, (*p, "options"))
        if adapter == "flaggems":
            _flaggems_options(v, options, (*p, "options"))
        env = v.mapping(body.get("env", {}) or {}, (*p, "env"))
        for k, val in env.items():
            if not isinstance(val, (str, int, float)) or isinstance(val, bool):
                v.error((*p, "env", k), f"env {k} is {kind_of(val)}", "a string")
        out[name] = BackendConfig(
            name, adapter, devices, dtypes, options, {k: str(x) for k, x in env.items()}
        )
    return out


def _flaggems_options(v: Validator, options: dict[str, Any], p: Path_) -> None:
    v.mapping(options, p, FLAGGEMS_OPTIONS)
    if "source" in options and source_problem(options["source"]):
        v.error((*p, "source"), f"source is {kind_of(options['source'])}", SOURCE_FORMS)
    if "vllm_fl" in options and not isinstance(options["vllm_fl"], str):
        v.error((*p, "vllm_fl"), f"vllm_fl is {kind_of(options['vllm_fl'])}", "a vllm-plugin-FL tree's path")


def _operators(
    v: Validator, value: Any, operators: tuple[str, ...], tags: tuple[str, ...]
) -> OperatorSelection:
    block = v.mapping(value or {}, ("operators",), ("include", "tags", "exclude"))
    include: str | list[str] = block.get("include", "all")
    if include != "all":
        include = v.str_list(include, ("operators", "include"), operators, "operator")
    sel_tags = v.str_list(block.get("tags", []) or [], ("operators", "tags"), tags, "tag")
    exclude = v.str_list(block.get("exclude", []) or [], ("operators", "exclude"), operators, "operator")
    return OperatorSelection(include, sel_tags, exclude)


def _tol_pair(v: Validator, value: Any, path: Path_) -> Tolerance:
    body = v.mapping(value, path, ("atol", "rtol"))
    if not body:
        v.error(path, "empty tolerance", "atol and/or rtol numbers")
    atol = v.number(body["atol"], (*path, "atol")) if "atol" in body else None
    rtol = v.number(body["rtol"], (*path, "rtol")) if "rtol" in body else None
    return Tolerance(atol, rtol)  # type: ignore[arg-type]  # a missing one falls through to the next layer


def _case_key(v: Validator, key: Any, operators: Sequence[str] | Mapping[str, Sequence[str]]) -> None:
    """A `tolerances.cases` key is `op` or `op/case` of the catalog (op names hold no '/')."""
    p = ("tolerances", "cases", key)
    op, slash, case = str(key).partition("/")
    if op not in operators:
        v.error(
            p, f"tolerances.cases key '{key}' names no operator", v.one_of(op, tuple(operators), "operator")
        )
    if slash and isinstance(operators, Mapping) and case not in operators[op]:
        v.error(
            p,
            f"tolerances.cases key '{key}': {op} has no case '{case}'",
            v.one_of(case, tuple(operators[op]), f"{op} case"),
        )


def _tolerances(
    v: Validator,
    value: Any,
    backends: dict[str, BackendConfig],
    operators: Sequence[str] | Mapping[str, Sequence[str]] = (),
) -> dict[str, dict[str, dict[str, Tolerance]]]:
    block = v.mapping(value or {}, ("tolerances",), ("dtypes", "backends", "devices", "cases"))
    out: dict[str, dict[str, dict[str, Tolerance]]] = {
        "dtypes": {},
        "backends": {},
        "devices": {},
        "cases": {},
    }
    dt = v.mapping(block.get("dtypes", {}) or {}, ("tolerances", "dtypes"), tuple(DTYPES))
    out["dtypes"]["*"] = {}
    for dtype, pair in dt.items():
        t = _tol_pair(v, pair, ("tolerances", "dtypes", dtype))
        default = DEFAULT_TOLERANCE[dtype]
        out["dtypes"]["*"][dtype] = Tolerance(
            t.atol if t.atol is not None else default[0], t.rtol if t.rtol is not None else default[1]
        )
    allowed_keys = {"backends": tuple(backends), "devices": DEVICE_TYPES, "cases": None}
    for section, allowed in allowed_keys.items():
        sec = v.mapping(block.get(section, {}) or {}, ("tolerances", section), allowed)
        for key, per_dtype in sec.items():
            if section == "cases" and operators:
                _case_key(v, key, operators)
            p = ("tolerances", section, key)
            per = v.mapping(per_dtype, p, tuple(DTYPES))
            out[section][str(key)] = {d: _tol_pair(v, pair, (*p, d)) for d, pair in per.items()}
    return out


def _perf(v: Validator, value: Any) -> PerfSettings:
    keys = ("warmup", "repetitions", "budget_s", "timeout_s", "workers", "cache", "repeat")
    block = v.mapping(value or {}, ("perf",), keys)
    p = PerfSettings()
    if "warmup" in block:
        p.warmup = int(v.number(block["warmup"], ("perf", "warmup"), integer=True))
    if "repetitions" in block:
        p.repetitions = int(v.number(block["repetitions"], ("perf", "repetitions"), minimum=1, integer=True))
    if "budget_s" in block:
        p.budget_s = float(v.number(block["budget_s"], ("perf", "budget_s"), allow_zero=False))
    if "timeout_s" in block:
        p.timeout_s = float(
            v.number(block["timeout_s"], ("perf", "timeout_s"), allow_zero=False, maximum=MAX_CASE_TIMEOUT_S)
        )
    if "workers" in block:
        w = block["workers"]
        if w != "auto":
            p.workers = int(v.number(w, ("perf", "workers"), minimum=1, integer=True))
    if "cache" in block:
        if block["cache"] not in CACHE_SETTINGS:
            v.error(("perf", "cache"), f"cache is {block['cache']!r}", f"one of {', '.join(CACHE_SETTINGS)}")
        p.cache = block["cache"]
    if "repeat" in block:
        p.repeat = int(v.number(block["repeat"], ("perf", "repeat"), minimum=1, integer=True))
    return p
