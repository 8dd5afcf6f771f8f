"""Operator coverage, measured: which aten overloads FlagGems registers, and which our catalog exercises.

Registered overloads are read from the installed flag_gems package's source (its `_FULL_CONFIG` table),
so this works on a host where FlagGems cannot initialise (no supported device). Exercised overloads are
recorded, not claimed: each spec's smallest case runs on the CPU under a TorchDispatchMode that logs the
aten overloads the call dispatches to. An overload counts as covered when a spec that routes through
FlagGems (its `flaggems=` names) dispatches to it. Fused FlagGems functions outside aten (rms_norm's
fused variants, rotary embedding, silu_and_mul...) are reported separately, by the specs' `impls`.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

from torch.utils._python_dispatch import TorchDispatchMode

from portability.catalog import load_catalog
from portability.spec import OpSpec, make_inputs


def flag_gems_registry() -> list[tuple[str, str]]:
    """(aten overload key, FlagGems function name) for every registration of the installed flag_gems."""
    spec = importlib.util.find_spec("flag_gems")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("flag_gems is not installed")
    tree = ast.parse(Path(spec.origin).read_text())
    pairs: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_FULL_CONFIG":
            for entry in node.value.elts:
                key, fn = entry.elts[0], entry.elts[1]
                if isinstance(key, ast.Constant) and isinstance(fn, ast.Name):
                    pairs.append((key.value, fn.id))
    return pairs


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.keys: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        overload = func._overloadpacket.__name__
        name = func._schema.overload_name
        self.keys.add(f"{overload}.{name}" if name else overload)
        return func(*args, **(kwargs or {}))


def dispatched_overloads(spec: OpSpec) -> set[str]:
    """The aten overload keys (FlagGems' spelling: `add.Tensor`, `mm`) the spec's smallest case hits."""
    case = min(spec.cases, key=lambda c: c.input_bytes(spec.dtypes[0]))
    dtype = "fp32" if "fp32" in spec.dtypes else spec.dtypes[0]
    args, kwargs = make_inputs(spec, case, dtype)
    with _Recorder() as rec:
        spec.fn(*args, **kwargs)
    return rec.keys


@dataclass
class Coverage:
    registered: list[str]
    covered: dict[str, list[str]] = field(default_factory=dict)  # overload -> specs that exercise it
    fused: list[str] = field(default_factory=list)  # specs routed to a FlagGems function outside aten

    @property
    def uncovered(self) -> list[str]:
        return [k for k in self.registered if k not in self.covered]


def measure() -> Coverage:
    registry = flag_gems_registry()
    by_function: dict[str, set[str]] = {}
    for key, fn in registry:
        by_function.setdefault(fn, set()).add(key)
    result = Coverage(registered=sorted({k for k, _ in registry}))
    for spec in load_catalog().values():
        routed = (
            set().union(*(by_function.get(fn, set()) for fn in spec.flaggems)) if spec.flaggems else set()
        )
        for key in sorted(dispatched_overloads(spec) & routed):
            result.covered.setdefault(key, []).append(spec.name)
        if "flaggems" in spec.impls:
            result.fused.append(spec.name)
    return result


def to_json(cov: Coverage) -> dict:
    return {
        "registered": len(cov.registered),
        "covered": len(cov.covered),
        "covered_by": cov.covered,
        "uncovered": cov.uncovered,
        "fused_specs": cov.fused,
    }
