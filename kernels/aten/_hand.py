"""What the hand-written aten spec files (hand_forms.py, hand_internal.py, hand_random.py) share: the spec
constructors and the small standard inputs. Hand specs call their overload directly
(`torch.ops.aten.divide.Scalar`), so what each covers is unambiguous; the reference is the same call on
the CPU in float64 (or the functional form, for out= variants). Shapes stay tiny: every case also runs on
the CPU, in CI and in `portability coverage`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from portability.kernels.aten._opinfo_cache import installed_registry

from portability.spec import Case, OpSpec, T

A = torch.ops.aten
F32 = ("fp32", "fp16", "bf16")
INTS = ("int64", "int32")
X = [Case("33x17", T(33, 17)), Case("strided 7x13", T(7, 13, layout="strided"))]
XPOS = [
    Case("33x17", T(33, 17, low=0.5, high=2.0)),
    Case("strided 7x13", T(7, 13, layout="strided", low=0.5, high=2)),
]
XY = [
    Case("33x17", T(33, 17), T(33, 17, low=0.5, high=2.0)),
    Case("broadcast 7x13 by 13", T(7, 13), T(13, low=0.5)),
]
INT1 = [Case("ints 33x17", T(33, 17, kind="int", low=-50, high=50))]
INT2 = [Case("ints 33x17", T(33, 17, kind="int", low=-50, high=50), T(33, 17, kind="int", low=-50, high=50))]
BIG = [Case("65536", T(1 << 16))]


def spec(
    key: str, fn: Callable[..., Any], cases: Sequence[Case], flaggems: Sequence[str], **kw: Any
) -> OpSpec:
    kind = kw.get("kind", "inplace" if key.split(".")[0].endswith("_") else "functional")
    kw["kind"] = kind
    # Routed to the functions the installed FlagGems registers for the overload: the declared ones, or its
    # own spelling of them (a registry reader may resolve an import alias: range_op -> range)
    registered = (installed_registry() or {}).get(key.split(" ")[0])
    routed = tuple(f for f in flaggems if registered is None or f in registered) or tuple(
        sorted(registered or ())
    )
    return OpSpec(f"aten.{key}", fn, cases=cases, flaggems=routed, tags=("aten", "hand", kind), **kw)


def installed_only(specs: list[OpSpec]) -> list[OpSpec]:
    """The specs of overloads the installed FlagGems registers (all of them where none is installed):
    the aten catalog follows the FlagGems under test, as the OpInfo-derived part does."""
    registry = installed_registry()
    return [s for s in specs if registry is None or s.name.removeprefix("aten.").split(" ")[0] in registry]


def out(key: str, functional: Callable[..., Any], cases: Sequence[Case], flaggems: Sequence[str], **kw: Any):
    overload = getattr(A, key.split(".")[0])
    overload = getattr(overload, key.split(".")[1])

    def call(*args: Any, out: Any = None, **kwargs: Any) -> Any:
        return overload(*args, out=out, **kwargs)

    return spec(key, call, cases, flaggems, ref=functional, kind="out", **kw)


def out_form(
    key: str,
    call: Callable[..., Any],
    ref: Callable[..., Any],
    cases: Sequence[Case],
    flaggems: Sequence[str],
    **kw: Any,
) -> OpSpec:
    """An out= overload called with extra arguments: `call(*args, out=...)` against `ref(*args)`."""
    return spec(key, call, cases, flaggems, ref=ref, kind="out", **kw)


# Inputs inside a function's domain, for the aliases and special functions
XOPEN = [Case("33x17 in (-0.9, 0.9)", T(33, 17, low=-0.9, high=0.9))]
XGT1 = [Case("33x17 in [1.5, 3)", T(33, 17, low=1.5, high=3.0))]
XWIDE = [Case("33x17 in [-5, 5)", T(33, 17, low=-5.0, high=5.0))]
XYPOS = [Case("33x17", T(33, 17, low=0.5, high=2.0), T(33, 17, low=0.5, high=2.0))]
XY2 = [Case("9x4 and 9x5", T(9, 4), T(9, 5))]
SHIFT = [
    Case("ints 33x17 by 0..6", T(33, 17, kind="int", low=-50, high=50), T(33, 17, kind="int", low=0, high=7))
]
# (values, indices) reductions over rows with many equal values: ties are the point
TIES = [Case("ties 9x16 in 0..3", T(9, 16, kind="ties", low=0, high=4))]
