"""Breadth: one spec per FlagGems-registered aten overload that PyTorch's OpInfo database (op_db) reaches.

Which OpInfo entry, which variant (the function, its in-place variant, its out= form, or its backward)
and which of its samples reach an overload is measured, not guessed: `regenerate` runs the first samples
of every op_db entry on the CPU under an OverloadRecorder and keeps, per registered overload, the best
match. That table is derived for the installed FlagGems and torch and cached on disk by their versions
(kernels/aten/_opinfo_cache.py): a FlagGems that registers a new aten operator with an OpInfo entry gets
its cases without anyone writing a spec. The tables for the FlagGems the project ships evidence for are
checked in (kernels/aten/_opinfo_table*.py; `python -m portability.kernels.aten._opinfo_derive --module NAME`
writes one for the installed pair). At import nothing of op_db is loaded (it takes seconds) unless the
table must be derived: names, dtypes and sizes come from the table; a case's inputs come from the OpInfo
sample generator run under the case's seed (`Case.sampled`), so every backend sees the same numbers for
the same torch version. Derived specs carry the tag `opinfo-derived`.

Not through OpInfo, written by hand in kernels/aten/hand_*.py: Scalar/out/in-place forms and aliases
(hand_forms.py), random ops (hand_random.py: distribution checks, where OpInfo compares them elementwise
with themselves), aten-internal ops (hand_internal.py).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from functools import cache
from typing import Any

import torch
from portability.kernels.aten import (
    _opinfo_table,
    _opinfo_table_5_3_4,
    hand_forms,
    hand_internal,
    hand_random,
)
from portability.kernels.aten._opinfo_cache import Pairs, load_table
from portability.kernels.aten._opinfo_derive import _detach, regenerate

from portability.spec import DEVICE, DTYPES, Case, CaseUnavailable, OpSpec

HAND = {s.name for m in (hand_forms, hand_internal, hand_random) for s in m.SPECS}
DERIVED_TAG = "opinfo-derived"

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
                "the table was derived from another torch: delete its cache (kernels/aten/_opinfo_cache.py)"
            )
        args = (s.input, *s.args)
        kwargs = dict(s.kwargs)
        if "device" in kwargs:  # factories: build on the device under test, not on the sampling CPU
            kwargs["device"] = DEVICE
        if not backward:
            args, kwargs = _detach(args), _detach(kwargs)
        return args, kwargs

    return sample


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


def spec_for(key: str, row: dict[str, Any], functions: dict[str, list[str]]) -> OpSpec:
    """The spec of one table row; `functions`: the installed FlagGems' function names per overload (the
    row's own, from when it was derived, where FlagGems is not installed)."""
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
        flaggems=tuple(functions.get(key, row["flaggems"])),
        tags=("aten", "opinfo", DERIVED_TAG, KIND[variant]),
        kind=KIND[variant],  # type: ignore[arg-type]
        compare="values_of_indices" if key in INDEX_DIM_ARG else ORDER_FREE.get(key, "allclose"),  # type: ignore[arg-type]
        dim_arg=INDEX_DIM_ARG.get(key, 2),
        writes=WRITES.get(key, ()),
        unspecified_if_empty=UNSPECIFIED_IF_EMPTY.get(key, ()),
        atol=ATOL.get(key, {}),
        rtol=RTOL.get(key, {}),
        upcast=base not in COMPARISONS,
    )


def _functions(pairs: Pairs) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for key, fn in pairs:
        names.setdefault(key, []).append(fn)
    return {k: sorted(set(v)) for k, v in names.items()}


CHECKED_IN = {
    m.__name__.rsplit(".", 1)[-1]: (m.KEY, m.TABLE) for m in (_opinfo_table, _opinfo_table_5_3_4)
}  # the first is the default, used where flag_gems is not installed
DERIVED = load_table(CHECKED_IN, regenerate)
TABLE = DERIVED.table
FUNCTIONS = _functions(DERIVED.pairs)
# Overloads with a hand-written spec (random ops above all) are not generated twice.
SPECS = [spec_for(k, row, FUNCTIONS) for k, row in sorted(TABLE.items()) if f"aten.{k}" not in HAND]
