"""Fused FlagGems operators outside aten (kernels/fused/*.py and the other specs with impls["flaggems"]).

Two things are checked without a device: every fused spec passes its float64 reference on torch@cpu at
fp32 through the real command line, and every impls["flaggems"] calls a function the installed flag_gems
exports, with arguments its real signature accepts. flag_gems cannot be imported on a CPU-only host (it
finds no device), so its signatures are read from source and its calls are recorded through a stand-in
module, never executed.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import inspect
import json
import pkgutil
import sys
import types
from pathlib import Path
from typing import Any

import portability.kernels.fused as fused_package
import pytest
from portability.kernels.fused import _common as _fused

from portability.catalog import load_catalog
from portability.spec import make_inputs

CATALOG = load_catalog()
FUSED = sorted(name for name, spec in CATALOG.items() if "fused" in spec.tags)
WITH_IMPL = sorted(name for name, spec in CATALOG.items() if "flaggems" in spec.impls)

# What vllm-plugin-FL routes to FlagGems (vllm_fl/dispatch/backends/flaggems/register_ops.py, flaggems.py,
# impl/*.py; vllm_fl/attention/attention.py) and kernels/fused/*.py cover (silu_and_mul, rms_norm with and
# without residual and apply_rotary_pos_emb have their specs in activation.py, norm.py and attention.py).
VLLM_FL_ROUTED = {
    "gelu_and_mul",
    "topk_softmax",
    "moe_sum",
    "moe_align_block_size",
    "fused_experts",
    "reshape_and_cache_flash",
    "flash_attn_varlen_func",
    "rotary_embedding_inplace",
    "dispatch_fused_moe_kernel",
}
FUSED_MODULES = [
    importlib.import_module(f"{fused_package.__name__}.{m.name}")
    for m in pkgutil.iter_modules(fused_package.__path__)
    if not m.name.startswith("_")
]
WHEELS = Path(__file__).resolve().parents[1].parent / "shared" / "wheels"


def test_fused_catalog_is_what_kernels_fused_declares():
    declared = [s for m in FUSED_MODULES for s in m.SPECS]
    ours = {s.name for s in declared}
    assert ours <= set(FUSED)
    assert set(_fused.TARGETS) == ours
    assert {s.name for s in declared if "vllm-fl" in s.tags} == VLLM_FL_ROUTED
    assert {"silu_and_mul", "fused_add_rms_norm", "rotary_embedding"} <= set(FUSED)


def test_every_fused_spec_passes_its_reference_on_torch_cpu_fp32(tmp_path, cli):
    out = tmp_path / "run"
    args = ("--backends", "torch", "--devices", "cpu", "--dtypes", "fp32", "--tags", "fused", "--no-serving")
    # One intra-op thread: on a shared 2-core runner torch's thread pool stalls behind other processes
    # (measured 55 s with 2 threads vs 28 s with 1 while another sweep ran); results do not change.
    proc = cli("run", *args, "--out", str(out), env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines() if line.strip()]
    ops = [r for r in rows if r.get("kind") == "op"]
    expected = {
        (name, c.name) for name in FUSED for c in CATALOG[name].cases if "fp32" in CATALOG[name].dtypes
    }
    assert {(r["op"], r["case"]) for r in ops} == expected  # no silent subset
    bad = [f"{r['op']} [{r['case']}]: {r['status']} {r['reason']}" for r in ops if r["status"] != "pass"]
    assert not bad, "\n".join(bad)


# --------------------------------------------------------------- FlagGems signatures, read from source


@functools.cache
def _flag_gems_root() -> Path:
    spec = importlib.util.find_spec("flag_gems")
    if spec is None or spec.origin is None:
        pytest.skip("flag_gems is not installed")
    return Path(spec.origin).parent


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _exports(init: Path) -> tuple[set[str], dict[str, tuple[str, int, str]]]:
    """(__all__, name -> (module, level, original name) for every `from X import name`)."""
    tree = _tree(init)
    names: set[str] = set()
    imports: dict[str, tuple[str, int, str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "__all__":
            names = {e.value for e in node.value.elts if isinstance(e, ast.Constant)}
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                imports[alias.asname or alias.name] = (node.module or "", node.level, alias.name)
    return names, imports


def _module_file(root: Path, dotted: str) -> Path:
    rel = Path(*dotted.split(".")[1:])  # below flag_gems/
    as_file = root / rel.with_suffix(".py")
    return as_file if as_file.is_file() else root / rel / "__init__.py"


def _find_def(root: Path, dotted_module: str, name: str, depth: int = 0) -> ast.FunctionDef:
    path = _module_file(root, dotted_module)
    for node in _tree(path).body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
        if isinstance(node, ast.ImportFrom) and depth < 4:
            for alias in node.names:
                if (alias.asname or alias.name) == name:
                    base = dotted_module if path.name == "__init__.py" else dotted_module.rsplit(".", 1)[0]
                    for _ in range(node.level - 1):
                        base = base.rsplit(".", 1)[0]
                    module = node.module if node.level == 0 else ".".join(filter(None, [base, node.module]))
                    return _find_def(root, module, alias.name, depth + 1)
    raise LookupError(f"no def {name} in {path}")


def resolve(path: str, root: Path | None = None) -> ast.FunctionDef:
    """The FunctionDef of `flag_gems.<path>` in the installed package (or the package folder `root`).
    Top-level names must be public exports (`__all__`) of flag_gems.fused or flag_gems.ops, which
    flag_gems re-exports with `import *`."""
    root = root or _flag_gems_root()
    *module, name = path.split(".")
    if module:
        return _find_def(root, ".".join(["flag_gems", *module]), name)
    for package in ("fused", "ops"):
        public, imports = _exports(root / package / "__init__.py")
        if name in public and name in imports:
            source, level, original = imports[name]
            dotted = source if level == 0 else f"flag_gems.{package}.{source}"
            return _find_def(root, dotted, original)
    raise LookupError(f"flag_gems exports no function {name!r} (fused/ops __all__)")


_REQUIRED = object()


def signature_of(fn: ast.FunctionDef) -> inspect.Signature:
    a = fn.args
    P = inspect.Parameter
    positional = [*a.posonlyargs, *a.args]
    defaults = [_REQUIRED] * (len(positional) - len(a.defaults)) + list(a.defaults)
    params = []
    for i, (arg, default) in enumerate(zip(positional, defaults, strict=True)):
        kind = P.POSITIONAL_ONLY if i < len(a.posonlyargs) else P.POSITIONAL_OR_KEYWORD
        params.append(P(arg.arg, kind, default=P.empty if default is _REQUIRED else None))
    if a.vararg:
        params.append(P(a.vararg.arg, P.VAR_POSITIONAL))
    for arg, default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
        params.append(P(arg.arg, P.KEYWORD_ONLY, default=P.empty if default is None else None))
    if a.kwarg:
        params.append(P(a.kwarg.arg, P.VAR_KEYWORD))
    return inspect.Signature(params)


class _Called(Exception):
    pass


class _Recorder(types.ModuleType):
    """Stands in for flag_gems (and its submodules): any attribute is another recorder; calling one
    records the dotted name and arguments, then stops the impl."""

    def __init__(self, path: str, log: list[tuple[str, tuple[Any, ...], dict[str, Any]]]) -> None:
        super().__init__(path)
        self._log = log

    def __getattr__(self, name: str) -> _Recorder:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Recorder(f"{self.__name__}.{name}", self._log)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._log.append((self.__name__.removeprefix("flag_gems."), args, kwargs))
        raise _Called


def recorded_call(op: str, monkeypatch) -> tuple[str, tuple[Any, ...], dict[str, Any]]:
    spec = CATALOG[op]
    case = min(spec.cases, key=lambda c: c.input_bytes("fp32"))
    args, kwargs = make_inputs(spec, case, "fp32" if "fp32" in spec.dtypes else spec.dtypes[0])
    log: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    for name in [m for m in sys.modules if m == "flag_gems" or m.startswith("flag_gems.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "flag_gems", _Recorder("flag_gems", log))
    with pytest.raises(_Called):
        spec.impls["flaggems"](*args, **kwargs)
    assert len(log) == 1, log
    return log[0]


@pytest.mark.parametrize("op", WITH_IMPL)
def test_flaggems_impl_calls_a_real_function_with_its_real_signature(op, monkeypatch):
    _flag_gems_root()  # found before flag_gems is replaced by the recorder
    path, args, kwargs = recorded_call(op, monkeypatch)
    assert path == _fused.all_targets()[op]
    why = _fused.absent_reason(path, _flag_gems_root())
    if why:  # a function a later FlagGems adds: the backend reports the spec unsupported, with this reason
        assert _fused.absent_targets(_flag_gems_root())[op] == why
        pytest.skip(why)
    _assert_accepts(resolve(path), path, op, args, kwargs)


def _assert_accepts(fn: ast.FunctionDef, path: str, op: str, args: tuple, kwargs: dict) -> None:
    sig = signature_of(fn)
    try:
        sig.bind(*args, **kwargs)
    except TypeError as exc:
        pytest.fail(f"flag_gems.{path}{sig} does not accept the call {op} makes: {exc}")


@pytest.mark.parametrize("op", WITH_IMPL)
def test_flaggems_impl_matches_flag_gems_5_3_4(op, monkeypatch, flag_gems_5_3_4):
    """The same check against FlagGems 5.3.4 (the shared wheel, unpacked), where every fused function a
    spec calls exists."""
    path, args, kwargs = recorded_call(op, monkeypatch)
    assert _fused.absent_reason(path, flag_gems_5_3_4) is None
    _assert_accepts(resolve(path, flag_gems_5_3_4), path, op, args, kwargs)


def test_specs_reach_70_of_the_fused_functions_of_flag_gems_5_3_4(flag_gems_5_3_4):
    by_function = _fused.fused_function_specs(flag_gems_5_3_4)
    with_specs = sorted(f for f, specs in by_function.items() if specs)
    assert len(by_function) == 80
    assert len(with_specs) >= 70, sorted(set(by_function) - set(with_specs))
