"""Breadth: one spec per FlagGems-registered aten overload that PyTorch's OpInfo database (op_db) reaches.

Which OpInfo entry, which variant (the function, its in-place variant, its out= form, or its backward)
and which of its samples reach an overload was measured, not guessed: `python -m
portability.kernels.aten.opinfo` runs the first samples of every op_db entry on the CPU under
portability.coverage.OverloadRecorder and writes the choice to kernels/aten/_opinfo_table.py (regenerate
it when flag_gems or torch is upgraded). At import nothing of op_db is loaded (it takes seconds): the
table alone gives names, dtypes and sizes; a case's inputs come from the OpInfo sample generator run under
the case's seed (`Case.sampled`), so every backend sees the same numbers for the same torch version.

Not through OpInfo, written by hand in kernels/aten/extra.py: random ops (they need distribution checks,
and OpInfo compares them elementwise with itself), overloads no op_db sample reaches (Scalar overloads of
composite ops like `divide.Scalar`, `__or__`, `fill.Tensor`...), FlagGems-internal ops.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from portability.kernels.aten.extra import SPECS as HAND_SPECS

from portability.spec import DEVICE, DTYPES, Case, CaseUnavailable, OpSpec

HAND = {s.name for s in HAND_SPECS}

try:
    from portability.kernels.aten._opinfo_table import TABLE
except ImportError:  # not generated yet
    TABLE = {}

SAMPLES_PER_OP = 3
MAX_SAMPLE_NUMEL = 1 << 18
# OpInfo entries never used: random ops (checked statistically in aten/extra.py) and uninitialised memory.
RANDOM_OPINFOS = {
    "bernoulli", "cauchy", "exponential", "geometric", "log_normal", "normal", "uniform", "multinomial",
    "randn", "randn_like", "rand_like", "randint", "randint_like", "nn.functional.dropout",
    "nn.functional.dropout2d", "nn.functional.dropout3d", "nn.functional.alpha_dropout",
    "nn.functional.feature_alpha_dropout", "nn.functional.rrelu",
    "empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided", "empty_permuted",
    "nn.functional.fractional_max_pool2d", "nn.functional.fractional_max_pool3d",
    "pca_lowrank", "svd_lowrank",
}  # fmt: skip
# (values, indices) results whose raw indices may differ on ties: judged by the values they point at.
# The position of `dim` in the call (input, *sample.args) for these:
INDEX_DIM_ARG = {
    "topk": 2,
    "sort": 1,
    "max.dim": 1,
    "min.dim": 1,
    "argmax": 1,
    "argmin": 1,
    "cummax": 1,
    "cummin": 1,
}
ORDER_FREE = {"_unique2": "unique"}  # `unique(sorted=False)`: any order of the unique values is valid
# (`nonzero`'s contract fixes row-major order, so it is compared exactly.)
WRITES = {"native_batch_norm": (3, 4)}  # training mode updates the running statistics in place
# Eval mode leaves the saved mean/invstd unspecified: the CPU returns them empty, CUDA C-sized (seen on
# torch@cuda in docs/scorecards/h100-sweep-2026-11-24: "shape (2,) != reference (0,)").
UNSPECIFIED_IF_EMPTY = {"native_batch_norm": (1, 2)}
COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le", "greater", "isclose", "allclose", "equal"}
# Per-overload tolerances where one output rounding (the default) is not what the op can promise. OpInfo
# samples are in [-9, 9], not [-1, 1):
#   addr: beta·M + alpha·(v1 ⊗ v2) rounds terms up to |81 + 9| before cancelling: half an fp16 ulp at 64 is
#         0.03, a bf16 one 0.25.
#   pow.Scalar: the Python scalar base is rounded to the tensor dtype (relative 2^-11 in fp16, 2^-8 in
#         bf16) and raised to exponents up to 9, then the result rounded: up to 10x that.
#   cumsum(.out): a scan may round every partial sum to the dtype (torch's CUDA kernel does), and partial
#         sums of 5 terms reach |45| before cancelling: an ulp at 32 is 0.03 in fp16, 0.25 in bf16. On an
#         H100 torch@cuda erred by 0.0078 (fp16) and 0.125 (bf16) on results near 0, FlagGems by the same.
CUMSUM_ATOL = {"fp16": 2**-5, "bf16": 2**-2}
ATOL = {"addr": {"fp16": 3e-2, "bf16": 0.25}, "cumsum": CUMSUM_ATOL, "cumsum.out": CUMSUM_ATOL}
RTOL = {"pow.Scalar": {"fp16": 10 * 2**-11, "bf16": 10 * 2**-8}}


@cache
def opinfo(name: str) -> Any:
    """The op_db entry `name` (`nn.functional.gelu`, or `div.floor_rounding` for a variant test)."""
    from torch.testing._internal.common_methods_invocations import op_db

    for o in op_db:
        if (o.name + (f".{o.variant_test_name}" if o.variant_test_name else "")) == name:
            return o
    raise CaseUnavailable(f"op_db has no entry {name!r} in torch {torch.__version__}")


def sample_fn(name: str, index: int, backward: bool, grad: bool) -> Callable[[str, int], tuple[tuple, dict]]:
    """Sample `index` of an OpInfo generator, drawn under the case seed on the CPU. `grad`: drawn with
    requires_grad as when the table was made (some generators yield other samples without it)."""

    def sample(dtype: str, seed: int) -> tuple[tuple, dict]:
        o = opinfo(name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            gen = o.sample_inputs(
                "cpu", DTYPES[dtype], requires_grad=grad and DTYPES[dtype].is_floating_point
            )
            s = next(itertools.islice(gen, index, None), None)
        if s is None:
            raise CaseUnavailable(
                f"op_db {name} has no sample {index} at {dtype} in torch {torch.__version__}: "
                "regenerate kernels/aten/_opinfo_table.py (python -m portability.kernels.aten.opinfo)"
            )
        args = (s.input, *s.args)
        kwargs = dict(s.kwargs)
        if "device" in kwargs:  # factories: build on the device under test, not on the sampling CPU
            kwargs["device"] = DEVICE
        if not backward:
            args, kwargs = _detach(args), _detach(kwargs)
        return args, kwargs

    return sample


def _detach(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detach(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    return obj


def variant_fn(name: str, variant: str) -> Callable[..., Any]:
    """The OpInfo's function (`op`, `backward`: the forward, differentiated by the harness), its in-place
    variant, or its out= form, resolved when first called."""

    def call(*args: Any, **kwargs: Any) -> Any:
        o = opinfo(name)
        if variant == "inplace":
            return o.inplace_variant(*args, **kwargs)
        return o.op(*args, **kwargs)

    call.__name__ = f"opinfo.{name}.{variant}"
    return call


KIND = {"op": "functional", "inplace": "inplace", "out": "out", "backward": "backward"}


def spec_for(key: str, row: dict[str, Any]) -> OpSpec:
    name, variant = row["opinfo"], row["variant"]
    base = key.split(".")[0]
    cases = [
        Case.sampled(f"s{i} {desc}", sample_fn(name, i, variant == "backward", row.get("grad", True)), numel)
        for i, numel, desc in row["samples"]
    ]
    return OpSpec(
        f"aten.{key}",
        variant_fn(name, variant),
        cases=cases,
        dtypes=tuple(row["dtypes"]),
        flaggems=tuple(row["flaggems"]),
        tags=("aten", "opinfo", KIND[variant]),
        kind=KIND[variant],  # type: ignore[arg-type]
        compare="values_of_indices" if key in INDEX_DIM_ARG else ORDER_FREE.get(key, "allclose"),  # type: ignore[arg-type]
        dim_arg=INDEX_DIM_ARG.get(key, 2),
        writes=WRITES.get(key, ()),
        unspecified_if_empty=UNSPECIFIED_IF_EMPTY.get(key, ()),
        atol=ATOL.get(key, {}),
        rtol=RTOL.get(key, {}),
        upcast=base not in COMPARISONS,
    )


# Overloads with a hand-written spec (random ops above all) are not generated twice.
SPECS = [spec_for(key, row) for key, row in sorted(TABLE.items()) if f"aten.{key}" not in HAND]


# ---- regeneration (python -m portability.kernels.aten.opinfo) ------------------------------------------


def _wanted_variant(key: str) -> str:
    base, _, overload = key.partition(".")
    if "backward" in base:
        return "backward"
    if "out" in overload.split("_"):
        return "out"
    if base.endswith("_") and not (base.startswith("__") and not base.startswith("__i")):
        return "inplace"
    return "op"


def _norm(name: str) -> str:
    name = name.split(".")[-1] if name.startswith(("nn.", "special.", "linalg.")) else name.split(".")[0]
    for cut in ("native_", "_backward_data", "_backward", "_with_indices"):
        name = name.replace(cut, "")
    return name.strip("_")


def _describe(obj: Any) -> str:
    if isinstance(obj, torch.Tensor):
        return "x".join(map(str, obj.shape)) or "scalar"
    if isinstance(obj, (list, tuple)) and any(isinstance(o, torch.Tensor) for o in obj):
        return "[" + ",".join(_describe(o) for o in obj if isinstance(o, torch.Tensor)) + "]"
    return ""


def regenerate(samples_scanned: int = 10) -> dict[str, dict[str, Any]]:
    """Measure which OpInfo variant/sample reaches each registered overload (see the module docstring)."""
    import warnings

    from torch.testing._internal.common_methods_invocations import op_db

    from portability.coverage import OverloadRecorder, flag_gems_registry
    from portability.spec import DTYPES as NAMES

    warnings.filterwarnings("ignore")
    registry = flag_gems_registry()
    keys = {k for k, _ in registry}
    functions: dict[str, list[str]] = {}
    for k, fn in registry:
        functions.setdefault(k, []).append(fn)
    by_dtype = {v: k for k, v in NAMES.items()}
    found: dict[str, list[tuple]] = {}
    r_grad: dict[str, bool] = {}
    with OverloadRecorder(keys) as rec:
        for o in op_db:
            name = o.name + (f".{o.variant_test_name}" if o.variant_test_name else "")
            if o.name in RANDOM_OPINFOS:
                continue
            cpu, cuda = o.supported_dtypes("cpu"), o.supported_dtypes("cuda")
            dtype = next((d for d in (torch.float32, torch.int64, torch.bool) if d in cpu), None)
            if dtype is None:
                continue
            grad = dtype.is_floating_point and o.supports_autograd
            r_grad[name] = grad
            try:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(0)
                    gen = o.sample_inputs("cpu", dtype, requires_grad=grad)
                    samples = list(itertools.islice(gen, samples_scanned))
            except Exception:
                continue
            variants = ["op", *(["inplace"] if o.inplace_variant else [])]
            variants += (["out"] if o.supports_out else []) + (["backward"] if grad else [])
            for i, s in enumerate(samples):
                args, kwargs = (s.input, *s.args), dict(s.kwargs)
                numel = sum(t.numel() for t in _tensors((args, kwargs)))
                if numel > MAX_SAMPLE_NUMEL or _draws_random(kwargs):
                    continue
                for v in variants:
                    hit = _reach(o, v, args, kwargs, rec)
                    if not hit:
                        continue
                    allowed = cpu & cuda
                    if v == "backward":
                        allowed &= o.supported_backward_dtypes("cpu")
                    if v == "inplace" and o.promotes_int_to_float:
                        allowed = {d for d in allowed if d.is_floating_point}
                    dts = sorted((by_dtype[d] for d in allowed if d in by_dtype), key=list(NAMES).index)
                    desc = ", ".join(d for d in (_describe(a) for a in args) if d)
                    for key in hit & keys:
                        found.setdefault(key, []).append((name, v, i, numel, desc, dts))
    table: dict[str, dict[str, Any]] = {}
    for key, rows in found.items():
        want = _wanted_variant(key)

        def score(r: tuple, key: str = key, want: str = want) -> tuple:
            n = _norm(r[0])
            k = _norm(key)
            named = 0 if n == k else 1 if (n in k or k in n) else 2
            return (r[1] != want, named, ("backward" in r[0]) != ("backward" in key), r[0])

        best = min(rows, key=score)
        if best[1] != want and want in ("inplace", "out", "backward"):
            continue  # e.g. only the functional form reaches it: leave it to a hand-written spec
        if not best[5]:
            continue
        chosen = sorted((r for r in rows if r[:2] == best[:2]), key=lambda r: r[2])[:SAMPLES_PER_OP]
        table[key] = {
            "opinfo": best[0],
            "variant": best[1],
            "dtypes": best[5],
            "flaggems": sorted(set(functions[key])),
            "samples": [(r[2], r[3], r[4][:60]) for r in chosen],
            "grad": r_grad[best[0]],
        }
    return table


def _draws_random(kwargs: dict[str, Any]) -> bool:
    """A sample that makes a deterministic op random (SDPA with dropout_p > 0): a CPU float64 reference and
    a device draw different random numbers, so such a sample is never compared element-wise. On an H100,
    `_safe_softmax` (via SDPA) with dropout_p=0.5 was off by up to 18 on torch@cuda itself."""
    p = kwargs.get("dropout_p", 0.0)
    return isinstance(p, (int, float)) and p > 0


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _tensors(o)]
    return []


def _reach(o: Any, variant: str, args: tuple, kwargs: dict, rec: Any) -> set[str]:
    """The overloads one call of this OpInfo variant reaches (empty if the call fails)."""
    from portability.run.case import _clone

    a, k = _clone(_detach(args)), _clone(_detach(kwargs))
    try:
        if variant == "backward":
            leaves = [t.requires_grad_() for t in _tensors((a, k)) if t.is_floating_point()]
            with torch.enable_grad():
                out = o.op(*a, **k)
                outs = [t for t in _tensors(out) if t.requires_grad]
                if not outs or not leaves:
                    return set()
                rec.seen.clear()
                torch.autograd.grad(outs, leaves, [torch.ones_like(t) for t in outs], allow_unused=True)
            return set(rec.seen)
        with torch.no_grad():
            if variant == "out":
                res = o.op(*a, **k)
                out = tuple(map(torch.empty_like, res)) if isinstance(res, tuple) else torch.empty_like(res)
                rec.seen.clear()
                o.op(*a, **k, out=out)
            else:
                rec.seen.clear()
                (o.inplace_variant if variant == "inplace" else o.op)(*a, **k)
        return set(rec.seen)
    except Exception:
        return set()


if __name__ == "__main__":
    from pathlib import Path

    table = regenerate()
    target = Path(__file__).with_name("_opinfo_table.py")
    rows = "".join(f"    {k!r}: {v!r},\n" for k, v in sorted(table.items()))
    target.write_text(
        "# ruff: noqa: E501\n"
        '"""Generated by `python -m portability.kernels.aten.opinfo` (see kernels/aten/opinfo.py): for each\n'
        "FlagGems-registered aten overload, the OpInfo entry, variant and samples (index, input elements,\n"
        'shapes) that reach it. One overload per line."""\n\n'
        f"# torch {torch.__version__}\n# fmt: off\nTABLE = {{\n{rows}}}\n# fmt: on\n"
    )
    print(f"{len(table)} overloads -> {target}")
