"""Declarative operator specs: what `kernels/*.py` files are made of.

An `OpSpec` is to this project what an OpInfo entry is to PyTorch's test suite: a name, the call under
test, a list of sample cases (tensor shapes described, never materialised at import), the dtypes it is
defined for, a tolerance, and a bytes/flops model for achieved-throughput figures. Inputs are generated
on the CPU from a seed derived from the case id, so every backend and device sees the same numbers;
the reference is the same call evaluated on the CPU in float64 (or a `ref` given by the spec), so it
never depends on the backend under test.

A kernels file only declares specs::

    SPECS = [
        OpSpec("softmax", lambda x: torch.softmax(x, -1),
               cases=[Case("logits 8x151936", T(8, 151936)), Case("empty", T(0, 16))],
               flaggems=("softmax",), tags=("qwen3", "reduction"),
               bytes=io_bytes),
    ]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from portability.distributions import Distribution

DTYPES: dict[str, torch.dtype] = {
    "fp64": torch.float64,
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "int64": torch.int64,
    "int32": torch.int32,
    "int8": torch.int8,
    "bool": torch.bool,
}
FLOAT_DTYPES = ("fp32", "fp16", "bf16")
ALL_FLOAT_DTYPES = ("fp64", *FLOAT_DTYPES)
INT_DTYPES = ("int64", "int32")

# Default tolerances per dtype (atol, rtol), compared against a float64 reference: roughly
# torch.testing's defaults widened to the rounding of one output element in that dtype.
DEFAULT_TOLERANCE: dict[str, tuple[float, float]] = {
    "fp64": (1e-7, 1e-7),
    "fp32": (1e-5, 1.3e-5),
    "fp16": (1e-3, 2e-3),
    "bf16": (1e-2, 1.6e-2),
    "int64": (0.0, 0.0),
    "int32": (0.0, 0.0),
    "int8": (0.0, 0.0),
    "bool": (0.0, 0.0),
}

Layout = Literal["contiguous", "transposed", "strided"]


class TargetDevice:
    """A `device=` argument meaning "the device under test" (factories): replaced when inputs are placed."""

    def __repr__(self) -> str:
        return "DEVICE"


DEVICE = TargetDevice()


@dataclass(frozen=True)
class T:
    """A tensor argument, described. `T(8, 2560)` is a float tensor of the case's dtype in [-1, 1).

    kind: "float" (case dtype unless `dtype` fixes one), "int" (integers in [low, high), int64 unless
    `dtype`), "bool" (True with probability 0.5), "index" (like int, default dtype int64), "ties"
    (integers in [low, high) stored in the case's float dtype: many equal values, for tie handling).
    layout: "transposed" builds the transpose of a contiguous tensor (a non-contiguous view with the
    given shape); "strided" takes every other element of the last dimension.
    specials: values written over the drawn ones, at fixed places: the first goes to the very last element
    (the last row's last column), the next to the first element, the rest spread evenly in between
    (`T(4, 33, specials=(NAN, INF, -INF))`: NaN/±inf propagation, masked -inf lanes).
    """

    shape: tuple[int, ...]
    kind: Literal["float", "int", "bool", "index", "ties"] = "float"
    low: float = -1.0
    high: float = 1.0
    dtype: str | None = None
    layout: Layout = "contiguous"
    specials: tuple[float, ...] = ()

    def __init__(
        self,
        *shape: int,
        kind: str = "float",
        low: float | None = None,
        high: float | None = None,
        dtype: str | None = None,
        layout: Layout = "contiguous",
        specials: tuple[float, ...] = (),
    ) -> None:
        object.__setattr__(self, "shape", tuple(shape))
        object.__setattr__(self, "kind", kind)
        default_low, default_high = (-1.0, 1.0) if kind == "float" else (0, 100)
        object.__setattr__(self, "low", default_low if low is None else low)
        object.__setattr__(self, "high", default_high if high is None else high)
        object.__setattr__(self, "dtype", dtype)
        object.__setattr__(self, "layout", layout)
        object.__setattr__(self, "specials", tuple(specials))

    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def resolved_dtype(self, case_dtype: str) -> torch.dtype:
        if self.dtype is not None:
            return DTYPES[self.dtype]
        if self.kind in ("float", "ties"):
            return DTYPES[case_dtype]
        if self.kind == "bool":
            return torch.bool
        return torch.int64

    def make(self, case_dtype: str, gen: torch.Generator) -> torch.Tensor:
        """Materialise on the CPU with `gen`; the caller moves it to the device."""
        shape = list(self.shape)
        if self.layout == "transposed" and len(shape) >= 2:
            shape[-1], shape[-2] = shape[-2], shape[-1]
        elif self.layout == "strided" and shape:
            shape[-1] *= 2
        dtype = self.resolved_dtype(case_dtype)
        if self.kind == "bool":
            t = torch.rand(shape, generator=gen) < 0.5
        elif self.kind in ("int", "index", "ties"):
            t = torch.randint(int(self.low), int(self.high), shape, generator=gen, dtype=torch.int64).to(
                dtype
            )
        else:
            t = (
                torch.rand(shape, generator=gen, dtype=torch.float64) * (self.high - self.low) + self.low
            ).to(dtype)
        if self.layout == "transposed" and len(shape) >= 2:
            t = t.transpose(-1, -2)
        elif self.layout == "strided" and shape:
            t = t[..., ::2]
        return _place_specials(t, self.specials)


def _place_specials(t: torch.Tensor, specials: tuple[float, ...]) -> torch.Tensor:
    """`t` with `specials` at the places T's docstring names (positions in `t`'s logical order)."""
    n = t.numel()
    if not specials or n == 0:
        return t
    t = t.clone()  # keeps a transposed or strided layout
    inner = [n * (i + 1) // (len(specials) - 1) for i in range(len(specials) - 2)]
    for value, place in zip(specials, [n - 1, 0, *inner], strict=False):
        index = torch.unravel_index(torch.tensor(min(place, n - 1)), t.shape)
        t[tuple(int(i) for i in index)] = value
    return t


# A sampled case's inputs: (case dtype, seed) -> (args, kwargs) on the CPU, the same for the same seed.
SampleFn = Callable[[str, int], tuple[tuple[Any, ...], dict[str, Any]]]


class CaseUnavailable(LookupError):
    """A sampled case cannot be built with the installed torch (e.g. its op_db lacks the sample the
    catalog was generated from): the case is skipped with this reason, it is not a harness failure."""


@dataclass(frozen=True)
class Case:
    """One sample: a name shown in the scorecard, positional args (T or plain values), keyword args.

    `Case.sampled(name, fn, numel)` is the other form: inputs produced by a seeded function (e.g. an OpInfo
    sample generator run under the case's seed) instead of T descriptions. It stays declarative: the
    function is only called when the case runs, and `numel` (elements of its inputs) sizes it at plan time.
    """

    name: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    atol: float | None = None  # case-level tolerance: wins over every other layer
    rtol: float | None = None
    sample: SampleFn | None = None
    numel: int = 0  # sampled cases: input elements

    def __init__(
        self, name: str, *args: Any, atol: float | None = None, rtol: float | None = None, **kwargs: Any
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", tuple(args))
        object.__setattr__(self, "kwargs", dict(kwargs))
        object.__setattr__(self, "atol", atol)
        object.__setattr__(self, "rtol", rtol)
        object.__setattr__(self, "sample", None)
        object.__setattr__(self, "numel", 0)

    @classmethod
    def sampled(
        cls, name: str, sample: SampleFn, numel: int, atol: float | None = None, rtol: float | None = None
    ) -> Case:
        case = cls(name, atol=atol, rtol=rtol)
        object.__setattr__(case, "sample", sample)
        object.__setattr__(case, "numel", numel)
        return case

    def tensors(self) -> list[T]:
        return [a for a in (*self.args, *self.kwargs.values()) if isinstance(a, T)]

    def input_bytes(self, case_dtype: str) -> int:
        if self.sample is not None:
            return self.numel * _itemsize(DTYPES[case_dtype])
        return sum(t.numel() * _itemsize(t.resolved_dtype(case_dtype)) for t in self.tensors())


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def io_bytes(case: Case, dtype: str, out: Any) -> int:
    """Bytes model for memory-bound ops: every input read once, every output written once."""
    return case.input_bytes(dtype) + sum(t.numel() * t.element_size() for t in _flat_tensors(out))


def _flat_tensors(out: Any) -> list[torch.Tensor]:
    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _flat_tensors(o)]
    return []


# The bug classes young kernel libraries ship, which an OpSpec's cases can exercise (`exercises=`):
BUG_CLASSES: dict[str, str] = {
    "block_tail": "sizes just above/below powers of two and block multiples, rows over 65,536 elements",
    "masked_lanes": "values where a wrong pad for masked lanes (0 instead of -inf) changes the result",
    "long_reduction": "long reductions/K dimensions where low-precision accumulation loses the result",
    "strides": "transposed or strided (non-contiguous) inputs",
    "broadcast": "inputs broadcast against each other",
    "ties": "many equal values: which index a tie returns",
    "nonfinite": "NaN and ±inf propagation",
    "last_row": "a special value in the last row's last column (off-by-one in the final block)",
    "empty": "zero-element inputs",
}

Compare = Literal["allclose", "values_of_indices", "sorted_values", "exact", "unordered_rows", "unique"]

# What kind of call an operator is; each kind has its own contract, checked by run/case.py:
#   functional  returns new tensors; no input may be written.
#   inplace     `add_`, `copy_`...: the first argument is mutated and returned (the same tensor, not a copy);
#               no other input may be written. (`mutates=True` is the older spelling of this kind.)
#   out         `fn(*args, out=...)`: the harness passes preallocated, poisoned `out` tensor(s) shaped like
#               the reference; the call must write them and return them. The reference is `fn` without out.
#   backward    the op under test is the backward of `fn`: the harness differentiates `fn` with autograd
#               (w.r.t. the inputs that require grad, else every floating-point input; a seeded cotangent)
#               and compares the gradients with autograd's own in float64 on the CPU. `flaggems=` names the
#               backward kernels, so on FlagGems the forward stays torch and the backward is FlagGems'.
#   random      never compared elementwise: `distribution=` (portability.distributions) checks support and
#               goodness of fit at a fixed significance, and two calls under one seed must agree exactly.
OpKind = Literal["functional", "inplace", "out", "backward", "random"]


@dataclass(frozen=True)
class OpSpec:
    """One operator under test.

    fn:       the call under test, written with public torch API (`torch.softmax(x, -1)`). Backends route
              it: `flaggems` enables the FlagGems kernels named in `flaggems` around it, `inductor`
              compiles it.
    ref:      reference on CPU float64 inputs; default `fn` itself (upcast inputs, CPU, float64).
    cases:    the samples; `dtypes` the case dtypes it is defined for.
    flaggems: FlagGems function names that implement this op (`flag_gems.only_enable(include=...)`).
    impls:    per-backend replacements of `fn` for fused ops with no torch equivalent that FlagGems
              patches (e.g. {"flaggems": lambda x, w: flag_gems.rms_norm(x, [x.shape[-1]], w, 1e-6)}).
    compare:  "allclose" (default); "values_of_indices" for (values, indices) results where ties make
              raw indices legitimately differ (the values must match and the input gathered at the
              returned indices must equal them; `dim_arg` is the positional index of `dim` when it is not
              a keyword); "sorted_values"; "exact" for integer/bool outputs; "unordered_rows" for results
              whose rows form a set (`nonzero`-like); "unique" for (values[, inverse][, counts]) results
              whose order is implementation-defined (`unique(sorted=False)`).
    kind:     functional / inplace / out / backward / random: see OpKind above.
    distribution: for random ops, what the output must be distributed as (portability.distributions).
    bytes / flops: models of the work done, for GB/s and TFLOP/s: callables (case, dtype, out) -> int.
    exercises: which of BUG_CLASSES its cases exercise (names checked by tests/test_verdicts.py).

    The output contract: the shape, and the dtype of the first and of every integer output, must be what
    the spec's own call gives at the case dtype (run/case.py `check_dtypes`); values as `compare` says.
    Where a backend may legitimately differ from torch, the one place that says so is `compare` (e.g.
    "values_of_indices": any index of a tie is accepted).
    """

    name: str
    fn: Callable[..., Any]
    cases: Sequence[Case]
    dtypes: Sequence[str] = FLOAT_DTYPES
    ref: Callable[..., Any] | None = None
    flaggems: Sequence[str] = ()
    impls: dict[str, Callable[..., Any]] = field(default_factory=dict)
    tags: Sequence[str] = ()
    atol: dict[str, float] = field(default_factory=dict)  # per dtype, op-level
    rtol: dict[str, float] = field(default_factory=dict)
    compare: Compare = "allclose"
    bytes: Callable[[Case, str, Any], int] | None = io_bytes
    flops: Callable[[Case, str, Any], int] | None = None
    mutates: bool = False  # older spelling of kind="inplace"
    kind: OpKind = "functional"
    distribution: Distribution | None = None  # for kind="random"
    dim_arg: int = 2  # compare="values_of_indices": position of `dim` in the call when not a keyword
    writes: tuple[int, ...] = ()  # input positions the op may write besides an in-place target (batch norm's
    # running statistics); every other input must be left as it was
    upcast: bool = True  # False: the reference runs in the case dtype (comparisons against Python scalars,
    # where upcasting the tensor but not the scalar changes which elements compare equal)
    unspecified_if_empty: tuple[int, ...] = ()  # output positions the op's contract leaves undefined when
    # the reference returns them empty (batch norm's saved statistics in eval mode: empty on the CPU,
    # C-sized on CUDA); any value is accepted there
    exercises: tuple[str, ...] = ()

    @property
    def op_kind(self) -> str:
        return "inplace" if self.mutates else self.kind

    def case(self, name: str) -> Case:
        for c in self.cases:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no case {name!r}")


def case_seed(op: str, case: str, dtype: str) -> int:
    """A stable seed per (op, case, dtype): the same inputs on every host, worker and backend."""
    return int.from_bytes(hashlib.sha256(f"{op}|{case}|{dtype}".encode()).digest()[:8], "little") & (
        2**63 - 1
    )


def make_inputs(spec: OpSpec, case: Case, dtype: str) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Materialise a case's inputs on the CPU, seeded."""
    seed = case_seed(spec.name, case.name, dtype)
    if case.sample is not None:
        return case.sample(dtype, seed)
    gen = torch.Generator().manual_seed(seed)
    args = tuple(a.make(dtype, gen) if isinstance(a, T) else a for a in case.args)
    kwargs = {k: (v.make(dtype, gen) if isinstance(v, T) else v) for k, v in case.kwargs.items()}
    return args, kwargs
