"""Operator coverage, measured: which aten overloads FlagGems registers, and which our catalog exercises.

Registered overloads are those of the FlagGems that is importable here, whichever its release or source
(portability/flaggems/registry.py): its live registry where it initialises (a GPU box), with the vendor's
own exclusions and conditions, else its package's `_FULL_CONFIG` table (a CPU-only host); the result says
which of the two it used and why, and which FlagGems (version, and commit when built from a tree).
Exercised overloads are recorded, not claimed: each spec's smallest case runs on the CPU, called exactly
as the harness calls it (in-place, out=, backward through autograd, random under a seed), under an
`OverloadRecorder` that logs the registered aten overloads the call reaches. An overload counts as
covered when a spec that routes through FlagGems (its `flaggems=` names) reaches it. Fused FlagGems
functions outside aten (rms_norm's fused variants, rotary embedding, silu_and_mul...) are reported
separately, by the specs' `impls`.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from portability.catalog import load_catalog
from portability.flaggems.registry import read_registry, registrations
from portability.flaggems.source import describe
from portability.spec import OpSpec, case_seed, make_inputs


def flag_gems_registry() -> list[tuple[str, str]]:
    """(aten overload key, FlagGems function name) for every registration of the installed flag_gems."""
    return [(r.key, r.function) for r in registrations()]


def aten_overload(key: str) -> torch._ops.OpOverload | None:
    """`add.Tensor` -> torch.ops.aten.add.Tensor (`mm` -> .default), or None if torch has no such op."""
    name, _, overload = key.partition(".")
    try:
        return getattr(getattr(torch.ops.aten, name), overload or "default")
    except (AttributeError, RuntimeError):
        return None


def _composite(op: torch._ops.OpOverload) -> bool:
    try:
        return torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CompositeImplicitAutograd")
    except RuntimeError:  # no such overload in this torch
        return False


def _number_dtype(v: bool | int | float) -> torch.dtype:
    return torch.bool if isinstance(v, bool) else torch.int64 if isinstance(v, int) else torch.float64


class _DispatchRecorder(TorchDispatchMode):
    def __init__(self, seen: set[str]) -> None:
        super().__init__()
        self.seen = seen

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.overload_name
        self.seen.add(f"{func._overloadpacket.__name__}.{name}" if name else func._overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


class OverloadRecorder:
    """Records which of `keys` (aten overloads in FlagGems' spelling) a block of code dispatches to.

    Two listeners, because neither sees everything: a TorchDispatchMode sees the overloads that reach a
    backend (factories like `zeros` included) but never a CompositeImplicitAutograd one (`divide.Tensor`,
    `conv2d`, `clip`...: decomposed before the Python key); a Python kernel registered for each key at
    AutogradCPU (FlagGems registers at the device key, below autograd, so its kernels see composite
    overloads before they decompose) sees those, records, and redispatches below autograd.
    """

    def __init__(self, keys: Iterable[str]) -> None:
        self.keys = set(keys)
        self.seen: set[str] = set()
        self._lib: torch.library.Library | None = None
        self._mode = _DispatchRecorder(self.seen)

    def __enter__(self) -> OverloadRecorder:
        self._lib = torch.library.Library("aten", "IMPL")
        with warnings.catch_warnings():  # "overriding a previously registered kernel"
            warnings.simplefilter("ignore")
            for key in sorted(self.keys):
                op = aten_overload(key)
                if op is not None and _composite(op):
                    with contextlib.suppress(RuntimeError):
                        self._lib.impl(key, self._hook(key, op), "AutogradCPU")
        self._mode.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._mode.__exit__(*exc)
        if self._lib is not None:
            self._lib._destroy()
            self._lib = None

    def _hook(self, key: str, op: torch._ops.OpOverload) -> Callable[..., Any]:
        tensor_args = [a.name for a in op._schema.arguments if str(a.type) == "Tensor"]

        def kernel(*args: Any, **kwargs: Any) -> Any:
            self.seen.add(key)
            # Python numbers passed for Tensor arguments arrive unwrapped: wrap them back for the call
            bound = list(args)
            for i, a in enumerate(op._schema.arguments[: len(bound)]):
                if a.name in tensor_args and isinstance(bound[i], (int, float, bool)):
                    bound[i] = torch.scalar_tensor(bound[i], dtype=_number_dtype(bound[i]))
            return op.decompose(*bound, **kwargs)  # the composite kernel itself: autograd still records

        return kernel


def dispatched_overloads(spec: OpSpec, keys: Iterable[str] = ()) -> set[str]:
    """The aten overload keys (FlagGems' spelling: `add.Tensor`, `mm`) the spec's smallest case reaches,
    called as the harness calls it; `keys` are the overloads to listen for below autograd (composite
    ones), everything that reaches the backend is recorded anyway."""
    from portability.run.case import _out_buffers, _to, invoke, reference

    dtype = "fp32" if "fp32" in spec.dtypes else spec.dtypes[0]
    case = min(spec.cases, key=lambda c: c.input_bytes(dtype))
    args, kwargs = _to(make_inputs(spec, case, dtype), "cpu")
    out = None
    if spec.op_kind == "out":
        out = _out_buffers(reference(spec.name, case.name, dtype)[1], "cpu", dtype)
    with OverloadRecorder(keys) as rec, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        invoke(spec, spec.fn, args, kwargs, dtype, case_seed(spec.name, case.name, dtype), out)
    return rec.seen


@dataclass
class Coverage:
    registered: list[str]
    covered: dict[str, list[str]] = field(default_factory=dict)  # overload -> specs that exercise it
    fused: list[str] = field(default_factory=list)  # specs routed to a FlagGems function outside aten
    broken: dict[str, str] = field(default_factory=dict)  # specs that raised on the CPU: why
    registry: str = "package"  # where `registered` was read: "live" or "package" (see read_registry)
    registry_note: str = ""
    flag_gems: dict[str, str] = field(default_factory=dict)  # version (+ commit) of the FlagGems measured

    @property
    def uncovered(self) -> list[str]:
        return [k for k in self.registered if k not in self.covered]

    @property
    def absent(self) -> list[str]:
        """Uncovered keys that name no aten overload of the installed torch: nothing can dispatch to them."""
        return [k for k in self.uncovered if not _exists(k)]


def _exists(key: str) -> bool:
    op = aten_overload(key)
    try:
        return op is not None and bool(op._schema) and _composite(op) in (True, False) and bool(op.name())
    except RuntimeError:
        return False


def measure() -> Coverage:
    registry = read_registry()
    by_function: dict[str, set[str]] = {}
    for key, fn in registry.pairs:
        by_function.setdefault(fn, set()).add(key)
    result = Coverage(
        registered=sorted({k for k, _ in registry.pairs}),
        registry=registry.source,
        registry_note=registry.note,
        flag_gems=describe(),
    )
    for spec in load_catalog().values():
        routed = (
            set().union(*(by_function.get(fn, set()) for fn in spec.flaggems)) if spec.flaggems else set()
        )
        if not routed:
            if "flaggems" in spec.impls:
                result.fused.append(spec.name)
            continue
        try:
            reached = dispatched_overloads(spec, routed)
        except Exception as exc:  # a spec that cannot even run on the CPU covers nothing: say so
            result.broken[spec.name] = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
            continue
        for key in sorted(reached & routed):
            result.covered.setdefault(key, []).append(spec.name)
        if "flaggems" in spec.impls:
            result.fused.append(spec.name)
    return result


def to_json(cov: Coverage) -> dict:
    return {
        "flag_gems": cov.flag_gems,
        "registered": len(cov.registered),
        "registry": cov.registry,
        "registry_note": cov.registry_note,
        "covered": len(cov.covered),
        "covered_by": cov.covered,
        "uncovered": cov.uncovered,
        "absent_from_torch": cov.absent,
        "torch": str(torch.__version__),
        "fused_specs": cov.fused,
        "broken_specs": cov.broken,
    }
