"""matrix.yaml: load, validate, and report every mistake as one `FILE:LINE: what, expected what` line.

Loading goes through PyYAML's SafeLoader composer (never `yaml.load`): we walk the node tree ourselves
so that every key keeps its line number, and we refuse anchors/aliases outright (they are never needed
in a matrix, and refusing them defuses alias bombs). Schema validation is hand-written rather than
JSON-Schema based because the errors must name the file line and say what is allowed, in one line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

from portability.registry import BUILTIN_ADAPTERS
from portability.spec import DEFAULT_TOLERANCE, DTYPES

MAX_NODES = 20_000
MAX_DEPTH = 32
# The tags PyYAML's safe resolver gives plain values; anything else was written explicitly (`!!python/...`).
PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)
MAX_FILE_BYTES = 1_000_000

Path_ = tuple[Any, ...]


class ConfigError(Exception):
    """A mistake in matrix.yaml; `str()` is the one line shown to the user."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


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


# --- YAML with line numbers ------------------------------------------------------------------------


def _compose(text: str, file: str) -> tuple[Any, dict[Path_, int]]:
    lines: dict[Path_, int] = {}
    count = 0
    seen: set[int] = set()

    def build(node: yaml.Node, path: Path_, used_at: int = 1) -> Any:
        nonlocal count
        count += 1
        if node.tag not in PLAIN_TAGS:  # explicit tags (!!python/..., !!set, !custom) are never needed
            raise ConfigError(
                file,
                node.start_mark.line + 1,
                f"YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')!r} is not allowed, "
                "expected plain values (strings, numbers, lists, mappings)",
            )
        if len(path) > MAX_DEPTH:
            raise ConfigError(
                file,
                node.start_mark.line + 1,
                f"nested more than {MAX_DEPTH} levels deep, expected a flat file",
            )
        if count > MAX_NODES:
            raise ConfigError(
                file,
                node.start_mark.line + 1,
                f"more than {MAX_NODES} YAML nodes, expected a small matrix file",
            )
        if id(node) in seen:  # an alias: the same node object appears again where it is used
            raise ConfigError(
                file,
                used_at,
                "YAML anchor/alias reused, expected plain values (anchors are not supported)",
            )
        seen.add(id(node))
        lines.setdefault(path, node.start_mark.line + 1)  # a key's own line wins over its value's
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k_node, v_node in node.value:
                key = build(k_node, (*path, "<key>"), k_node.start_mark.line + 1)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    raise ConfigError(
                        file,
                        k_node.start_mark.line + 1,
                        f"mapping key {key!r} is not a plain value, expected a name",
                    )
                if key in out:
                    raise ConfigError(
                        file, k_node.start_mark.line + 1, f"duplicate key {key!r}, expected each key once"
                    )
                lines[(*path, key)] = k_node.start_mark.line + 1
                out[key] = build(v_node, (*path, key), k_node.start_mark.line + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(v, (*path, i), node.start_mark.line + 1) for i, v in enumerate(node.value)]
        return _SCALARS.construct_object(node, deep=True)

    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader already refuses control characters (NUL, ESC...)
        root = loader.get_single_node()
    except RecursionError:  # PyYAML's composer recurses once per nesting level: [[[[...]]]] exhausts it
        line = loader.get_mark().line + 1 if loader else 1
        raise ConfigError(file, line, "nested too deeply to parse, expected a flat file") from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(
            file, line, f"character #x{exc.character:04x} is not allowed in YAML, expected printable text"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(file, line, f"not valid YAML ({exc.problem}), expected a YAML mapping") from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, 1, f"not valid YAML ({exc}), expected a YAML mapping") from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise ConfigError(file, 1, "the file is empty, expected a mapping with a 'backends' key")
    return build(root, ()), lines


# One SafeLoader used only as a constructor of scalar nodes (ints, floats, bools, strings, nulls).
_SCALARS = yaml.SafeLoader("")


# --- validation ------------------------------------------------------------------------------------

TOP_KEYS = ("version", "backends", "operators", "tolerances", "perf", "serving")
BACKEND_KEYS = ("adapter", "devices", "dtypes", "options", "env")
KNOWN_DEVICE_TYPES = ("cpu", "cuda", "xpu", "npu", "mlu", "musa", "gcu", "txda", "hip", "mps")


class _Validator:
    def __init__(self, file: str, lines: dict[Path_, int]) -> None:
        self.file, self.lines = file, lines

    def line(self, path: Path_) -> int:
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p, 1)

    def error(self, path: Path_, what: str, expected: str) -> NoReturn:
        raise ConfigError(self.file, self.line(path), f"{what}, expected {expected}")

    def mapping(self, value: Any, path: Path_, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
        name = ".".join(str(p) for p in path) or "the file"
        if not isinstance(value, dict):
            self.error(path, f"{name} is {_kind(value)}", "a mapping")
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    self.error((*path, key), f"unknown key '{key}' in {name}", f"one of {', '.join(allowed)}")
        return value

    def str_list(
        self, value: Any, path: Path_, allowed: tuple[str, ...] | None = None, what: str = "name"
    ) -> list[str]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.error(path, f"{'.'.join(map(str, path))} is {_kind(value)}", f"a list of {what}s")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error((*path, i), f"{what} {item!r} is {_kind(item)}", f"a {what} string")
            if allowed is not None and item not in allowed:
                self.error((*path, i), f"unknown {what} '{item}'", f"one of {', '.join(allowed)}")
        return list(value)

    def number(
        self, value: Any, path: Path_, minimum: float = 0.0, integer: bool = False, allow_zero: bool = True
    ) -> float:
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            self.error(path, f"{path[-1]} is {_kind(value)}", "an integer" if integer else "a number")
        if value < minimum or (not allow_zero and value == 0) or not math.isfinite(value):
            bound = f">= {minimum}" if allow_zero else f"> {minimum}"
            self.error(path, f"{path[-1]} is {value}", f"a finite number {bound}")
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "empty"
    return {
        dict: "a mapping",
        list: "a list",
        str: f"the string {value!r:.40}",
        bool: f"the boolean {value}",
        int: f"the integer {value}",
        float: f"the number {value}",
    }.get(type(value), type(value).__name__)


def load_matrix(
    path: str | Path,
    adapters: tuple[str, ...] | Callable[[str], bool],
    operators: tuple[str, ...],
    tags: tuple[str, ...],
    validate_serving: Callable[[dict[str, Any], Callable[..., NoReturn]], Any] | None = None,
) -> MatrixConfig:
    """Read and validate a matrix file. Raises ConfigError with a one-line message on any mistake."""
    path = Path(path)
    file = str(path)  # as the user wrote it: "matrix.yaml:12: ..." for the default
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            file, 1, f"cannot read the file ({exc.strerror}), expected a readable matrix file"
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(file, 1, f"file is {len(raw)} bytes, expected at most {MAX_FILE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            file, line, f"byte 0x{raw[exc.start]:02x} is not UTF-8, expected UTF-8 text"
        ) from None
    data, lines = _compose(text, file)
    v = _Validator(file, lines)
    top = v.mapping(data, (), TOP_KEYS)
    if "version" in top and top["version"] != 1:
        v.error(("version",), f"version is {top['version']!r}", "1")
    if "backends" not in top:
        v.error((), "no 'backends' key", "a 'backends' mapping naming at least one backend")
    backends = _backends(v, top["backends"], adapters)
    ops = _operators(v, top.get("operators", {}), operators, tags)
    tolerances = _tolerances(v, top.get("tolerances", {}), backends)
    perf = _perf(v, top.get("perf", {}))
    block = top.get("serving", {}) or {}
    v.mapping(block, ("serving",))
    serving: Any = block
    if validate_serving is not None:
        serving = validate_serving(block, lambda p, what, expected: v.error(("serving", *p), what, expected))
    return MatrixConfig(
        file, backends, ops, tolerances, perf, serving, line_of=v.line, serving_block=dict(block)
    )


def _backends(
    v: _Validator, value: Any, adapters: tuple[str, ...] | Callable[[str], bool]
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
        devices = v.str_list(body.get("devices", ["cpu"]), (*p, "devices"), what="device")
        for i, dev in enumerate(devices):
            dtype, _, index = dev.partition(":")
            if dtype not in KNOWN_DEVICE_TYPES or (index and not index.isdigit()):
                v.error(
                    (*p, "devices", i),
                    f"unknown device '{dev}'",
                    f"a device type ({', '.join(KNOWN_DEVICE_TYPES)}) optionally with ':N'",
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
        env = v.mapping(body.get("env", {}) or {}, (*p, "env"))
        for k, val in env.items():
            if not isinstance(val, (str, int, float)) or isinstance(val, bool):
                v.error((*p, "env", k), f"env {k} is {_kind(val)}", "a string")
        out[name] = BackendConfig(
            name, adapter, devices, dtypes, options, {k: str(x) for k, x in env.items()}
        )
    return out


def _operators(
    v: _Validator, value: Any, operators: tuple[str, ...], tags: tuple[str, ...]
) -> OperatorSelection:
    block = v.mapping(value or {}, ("operators",), ("include", "tags", "exclude"))
    include: str | list[str] = block.get("include", "all")
    if include != "all":
        include = v.str_list(include, ("operators", "include"), operators, "operator")
    sel_tags = v.str_list(block.get("tags", []) or [], ("operators", "tags"), tags, "tag")
    exclude = v.str_list(block.get("exclude", []) or [], ("operators", "exclude"), operators, "operator")
    return OperatorSelection(include, sel_tags, exclude)


def _tol_pair(v: _Validator, value: Any, path: Path_) -> Tolerance:
    body = v.mapping(value, path, ("atol", "rtol"))
    if not body:
        v.error(path, "empty tolerance", "atol and/or rtol numbers")
    atol = v.number(body["atol"], (*path, "atol")) if "atol" in body else None
    rtol = v.number(body["rtol"], (*path, "rtol")) if "rtol" in body else None
    return Tolerance(atol, rtol)  # type: ignore[arg-type]  # a missing one falls through to the next layer


def _tolerances(
    v: _Validator, value: Any, backends: dict[str, BackendConfig]
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
    allowed_keys = {"backends": tuple(backends), "devices": KNOWN_DEVICE_TYPES, "cases": None}
    for section, allowed in allowed_keys.items():
        sec = v.mapping(block.get(section, {}) or {}, ("tolerances", section), allowed)
        for key, per_dtype in sec.items():
            p = ("tolerances", section, key)
            per = v.mapping(per_dtype, p, tuple(DTYPES))
            out[section][str(key)] = {d: _tol_pair(v, pair, (*p, d)) for d, pair in per.items()}
    return out


def _perf(v: _Validator, value: Any) -> PerfSettings:
    block = v.mapping(value or {}, ("perf",), ("warmup", "repetitions", "budget_s", "timeout_s", "workers"))
    p = PerfSettings()
    if "warmup" in block:
        p.warmup = int(v.number(block["warmup"], ("perf", "warmup"), integer=True))
    if "repetitions" in block:
        p.repetitions = int(v.number(block["repetitions"], ("perf", "repetitions"), minimum=1, integer=True))
    if "budget_s" in block:
        p.budget_s = float(v.number(block["budget_s"], ("perf", "budget_s"), allow_zero=False))
    if "timeout_s" in block:
        p.timeout_s = float(v.number(block["timeout_s"], ("perf", "timeout_s"), allow_zero=False))
    if "workers" in block:
        w = block["workers"]
        if w != "auto":
            p.workers = int(v.number(w, ("perf", "workers"), minimum=1, integer=True))
    return p
