"""Run one operator case through one adapter: inputs, reference, check, timing -> a result row."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from portability.backends.base import BackendAdapter
from portability.catalog import load_catalog
from portability.matrix.config import Tolerance
from portability.perf import measure as perf
from portability.run.judge import Check, check_output, flatten
from portability.run.poison import perturbed_malloc, poison_allocator
from portability.spec import DTYPES, Case, CaseUnavailable, OpSpec, TargetDevice, case_seed, make_inputs

POISON_FLOAT = float("nan")
MAX_REASON_CHARS = 2000


@dataclass(frozen=True)
class CaseRequest:
    """Everything a worker needs to run one case; serialised in the plan file."""

    id: str
    cell: str
    backend: str
    device: str
    op: str
    case: str
    dtype: str
    atol: float
    rtol: float
    warmup: int
    repetitions: int
    budget_s: float
    #: bytes of the case's inputs at its dtype: the cost estimate that orders cases across workers
    input_bytes: int = 0
    #: perf.cache (auto | cold | warm) and how many times the timing runs (--repeat, for its noise)
    cache: str = "auto"
    repeat: int = 1

    def identity(self) -> dict[str, Any]:
        """The fields that name this case in a result row."""
        return {
            "id": self.id,
            "kind": "op",
            "cell": self.cell,
            "backend": self.backend,
            "device": self.device,
            "op": self.op,
            "case": self.case,
            "dtype": self.dtype,
        }


def _to(obj: Any, device: str, upcast: bool = False) -> Any:
    if isinstance(obj, TargetDevice):
        return device
    if isinstance(obj, torch.Tensor):
        if upcast and obj.is_floating_point():
            obj = obj.to(torch.float64)
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device, upcast) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device, upcast) for k, v in obj.items()}
    return obj


def _clone(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.clone()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    return obj


@lru_cache(maxsize=4)
def reference(op: str, case: str, dtype: str) -> tuple[Any, Any]:
    """(inputs on CPU, reference output on CPU): the spec's call (or `ref`) on float64-upcast inputs.
    In-place ops: (result, first argument after the call). Out variants: the call without `out`.
    Backward ops: autograd's gradients of the forward. Random ops: None (nothing to compare with)."""
    spec = load_catalog()[op]
    args, kwargs = make_inputs(spec, spec.case(case), dtype)
    if spec.op_kind == "random":
        return (args, kwargs), None
    fn = spec.ref or spec.fn
    up_args, up_kwargs = _clone(_to(args, "cpu", spec.upcast)), _clone(_to(kwargs, "cpu", spec.upcast))
    if spec.op_kind == "backward":
        return (args, kwargs), vjp(fn, up_args, up_kwargs, dtype, case_seed(op, case, dtype))
    with torch.no_grad():
        out = fn(*up_args, **up_kwargs)
    if spec.op_kind == "inplace":
        out = (out, up_args[0])
    return (args, kwargs), out


def _float_tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj] if obj.is_floating_point() or obj.is_complex() else []
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _float_tensors(o)]
    if isinstance(obj, dict):
        return [t for o in obj.values() for t in _float_tensors(o)]
    return []


def vjp(
    fn: Callable[..., Any],
    args: Any,
    kwargs: Any,
    dtype: str,
    seed: int,
    given: list[torch.Tensor] | None = None,
) -> tuple[Any, ...]:
    """Gradients of `fn`'s floating-point outputs, contracted with a seeded cotangent, with respect to
    its inputs that require grad (all floating-point inputs if none does): what a backward kernel
    computes. The cotangent is drawn on the CPU and rounded to the case dtype, so the float64 reference
    and the backend see the same numbers (`given`: drawn beforehand, see `cotangents`). Unused inputs get
    zeros."""
    chosen = [t for t in _float_tensors((args, kwargs)) if t.requires_grad] or _float_tensors((args, kwargs))
    leaves = {id(t): t.detach().requires_grad_(True) for t in chosen}

    def leafify(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            return leaves.get(id(obj), obj.detach())
        if isinstance(obj, (list, tuple)):
            return type(obj)(leafify(o) for o in obj)
        if isinstance(obj, dict):
            return {k: leafify(v) for k, v in obj.items()}
        return obj

    call_args, call_kwargs = leafify(args), leafify(kwargs)
    with torch.enable_grad():
        out = fn(*call_args, **call_kwargs)
        outs = [o for o in flatten(out) if isinstance(o, torch.Tensor) and o.requires_grad]
        if not outs or not leaves:
            raise ValueError("backward case: the forward has no differentiable output or input")
        shapes = [o.shape for o in outs]
        fits = given is not None and [c.shape for c in given] == shapes
        drawn = given if fits else _draw_cotangents(shapes, dtype, seed)
        cots = [
            c if (c.device, c.dtype) == (o.device, o.dtype) else c.to(o.device, o.dtype)
            for c, o in zip(drawn, outs, strict=True)
        ]
        grads = torch.autograd.grad(
            outs, list(leaves.values()), cots, allow_unused=True, materialize_grads=True
        )
    return tuple(g.detach() for g in grads)


def output_dtypes(spec: OpSpec, inputs_cpu: tuple[Any, Any]) -> list[torch.dtype | None] | None:
    """The dtype of each output of the spec's own call at the case dtype, from torch's meta kernels (no
    data, no compute), or None where they cannot say (data-dependent shapes, ops without a meta kernel).
    The result dtype is part of an operator's contract (a reduction's dtype, type promotion)."""
    try:
        with torch.no_grad():
            outs = flatten(spec.fn(*_to(inputs_cpu[0], "meta"), **_to(inputs_cpu[1], "meta")))
    except Exception:
        return None
    return [o.dtype if isinstance(o, torch.Tensor) else None for o in outs]


def check_dtypes(got: Any, expected: list[torch.dtype | None]) -> Check | None:
    """A failed Check if an output's dtype differs from the one the operator's contract gives: the first
    output's, and every integer/bool output's (indices)."""
    got_l = flatten(got)
    if len(got_l) != len(expected):
        return None  # the value check names a wrong number of outputs
    for position, (g, want) in enumerate(zip(got_l, expected, strict=True)):
        # Secondary floating-point outputs (saved statistics) legitimately differ by device: bf16 on the
        # CPU, float32 in the meta and CUDA kernels of native_layer_norm/native_batch_norm.
        if position and want is not None and want.is_floating_point:
            continue
        if want is not None and isinstance(g, torch.Tensor) and g.dtype != want:
            return Check(False, detail=f"output {position} has dtype {g.dtype}, the operator gives {want}")
    return None


def _draw_cotangents(shapes: list[torch.Size], dtype: str, seed: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed ^ 0x5EED)
    rounded = DTYPES[dtype] if DTYPES[dtype].is_floating_point else torch.float32
    return [(torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1).to(rounded) for shape in shapes]


def cotangents(
    spec: OpSpec, inputs_cpu: tuple[Any, Any], dtype: str, seed: int, device: str
) -> list[torch.Tensor] | None:
    """A backward case's cotangents, on the device, drawn before the route opens (the forward's output
    shapes come from the spec's own call on the upcast CPU inputs); None if that call cannot say, and
    `vjp` draws them itself."""
    args, kwargs = (
        _clone(_to(inputs_cpu[0], "cpu", spec.upcast)),
        _clone(_to(inputs_cpu[1], "cpu", spec.upcast)),
    )
    try:
        with torch.no_grad():
            outs = flatten((spec.ref or spec.fn)(*args, **kwargs))
    except Exception:
        return None
    shapes = [
        o.shape for o in outs if isinstance(o, torch.Tensor) and (o.is_floating_point() or o.is_complex())
    ]
    return [c.to(device) for c in _draw_cotangents(shapes, dtype, seed)]


def _out_buffers(want: Any, device: str, dtype: str) -> Any:
    """Preallocated outputs for an out= call, shaped like the reference, poisoned (NaN, -7, True)."""
    if isinstance(want, (list, tuple)):
        return type(want)(_out_buffers(w, device, dtype) for w in want)
    target = want.dtype
    if want.dtype == torch.float64 and DTYPES[dtype].is_floating_point:
        target = DTYPES[dtype]
    fill: float | int | bool = (
        float("nan") if target.is_floating_point else (True if target == torch.bool else -7)
    )
    return torch.full(want.shape, fill, dtype=target, device=device)


def invoke(
    spec: OpSpec,
    impl: Callable[..., Any],
    args: Any,
    kwargs: Any,
    dtype: str,
    seed: int,
    out: Any = None,
    cots: list[torch.Tensor] | None = None,
) -> Any:
    """One call of the op under test, as its kind requires (see spec.OpKind)."""
    kind = spec.op_kind
    if kind == "out":
        return impl(*args, **kwargs, out=out)
    if kind == "backward":
        return vjp(impl, args, kwargs, dtype, seed, cots)
    if kind == "random":
        torch.manual_seed(seed)  # every device's default generator
    return impl(*args, **kwargs)


def _same_tensor(a: Any, b: Any) -> bool:
    return isinstance(a, torch.Tensor) and (
        a is b
        or (
            a.data_ptr() == b.data_ptr()
            and a.shape == b.shape
            and a.stride() == b.stride()
            and a.dtype == b.dtype
        )
    )


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)


def _written_inputs(before: list[Any], after: list[Any]) -> list[int]:
    """Positions of tensors whose bytes changed (NaN-safe: bits, not values)."""
    return [
        i
        for i, (b, a) in enumerate(zip(before, after, strict=True))
        if isinstance(a, torch.Tensor) and a.numel() and not torch.equal(_bits(b), _bits(a))
    ]


def check_contract(
    spec: OpSpec, got: Any, call_args: Any, call_kwargs: Any, snapshot: list[Any], out: Any
) -> Check | None:
    """The kind's aliasing and side-effect contract (values are checked by check_output), or None."""
    kind = spec.op_kind
    inputs = flatten(list(call_args)) + flatten(list(call_kwargs.values()))
    first = 0
    if kind == "inplace":
        if not _same_tensor(got, call_args[0]):
            what = "a new tensor" if isinstance(got, torch.Tensor) else type(got).__name__
            return Check(False, detail=f"in-place op returned {what} instead of its mutated first input")
        first = 1  # the first input is meant to be written
    if kind == "out":
        got_l, out_l = flatten(got), flatten(out)
        if len(got_l) != len(out_l) or not all(_same_tensor(g, o) for g, o in zip(got_l, out_l, strict=True)):
            untouched = all(
                bool(torch.isnan(o).all()) if o.is_floating_point() else False for o in out_l if o.numel()
            )
            why = "ignored out= (the out tensor was not written)" if untouched else "did not return its out="
            return Check(False, detail=f"out= variant {why}")
    if kind in ("functional", "inplace", "out"):
        written = [i + first for i in _written_inputs(snapshot[first:], inputs[first:])]
        written = [i for i in written if i not in spec.writes]
        if written:
            return Check(False, detail=f"input(s) at position {written} written by a call that must not")
    return None


def _oom_types() -> tuple[type[BaseException], ...]:
    return (torch.OutOfMemoryError,) if hasattr(torch, "OutOfMemoryError") else ()


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return (text[: MAX_REASON_CHARS - len(where)] + where).strip()


@dataclass
class PreparedCase:
    """A case made ready outside the backend's route: reference, device inputs, the call's own copies,
    the snapshot that tells written inputs, poisoned out= buffers."""

    spec: OpSpec
    case: Case
    seed: int
    inputs_cpu: tuple[Any, Any]
    want: Any
    #: the inputs on the device (timing calls use them)
    args: Any
    kwargs: Any
    #: the checked call's own copies of the inputs, and a snapshot of them before the call
    call_args: Any
    call_kwargs: Any
    snapshot: list[Any]
    out_buf: Any
    #: random ops: fresh copies for the second call under the same seed
    again_args: Any = None
    again_kwargs: Any = None
    #: backward ops: the cotangents, drawn here so that no harness arithmetic runs under the route
    cotangents: list[torch.Tensor] | None = None
    #: the dtypes of the outputs the spec's own call gives at the case dtype (None: not known)
    out_dtypes: list[torch.dtype | None] | None = None


@dataclass
class CallOutcome:
    """What the call under test returned, and what was seen while it ran under the route."""

    out: Any
    first_call_s: float
    again: Any = None
    #: the backend's own kernels that ran during the call(s) (`kernel_launches()` delta), None if unknown
    own_launches: int | None = None


class _NotRunnable(Exception):
    """The harness could not prepare the case: the row gets `status` (skip or infra) and the reason."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


def run_case(req: CaseRequest, adapter: BackendAdapter, baseline: BackendAdapter | None) -> dict[str, Any]:
    """Execute one case in four stages; never raises for operator faults (they become statuses).

    prepare (outside the route) -> call under the adapter's route -> judge (outside the route) -> time.
    Only the call under test and its timing run inside `route()`: a backend that overrides the ops the
    harness uses (copies, comparisons) cannot change its own verdict."""
    spec = load_catalog()[req.op]
    row: dict[str, Any] = {"status": "pass", "reason": None, "atol": req.atol, "rtol": req.rtol}
    row["input_bytes"] = req.input_bytes
    refusal = _refusal(req, adapter, spec)
    if refusal:
        return {**row, "status": "unsupported", "reason": refusal}
    try:
        prepared = prepare_case(req, spec)
    except _NotRunnable as exc:
        return {**row, "status": exc.status, "reason": exc.reason}
    try:
        called = call_under_route(adapter, prepared, req)
        row.update(judge_case(prepared, called, Tolerance(req.atol, req.rtol)))
        row.update(routing_evidence(adapter, spec, called))
        if row["status"] == "pass" and row["routing"] == "none":
            row.update(status="fallback", reason=row.pop("fallback_reason"))
        row.pop("fallback_reason", None)
        if row["status"] != "fallback":  # native torch's latency is not the backend's: not timed
            row.update(time_case(req, adapter, baseline, prepared, called))
    except _oom_types() as exc:
        row.update(status="oom", reason=_short(exc))
    except Exception as exc:
        row.update(status="error", reason=_short(exc))
    return row


def _refusal(req: CaseRequest, adapter: BackendAdapter, spec: OpSpec) -> str | None:
    if req.dtype not in adapter.supported_dtypes():
        return f"{adapter.name} declares no {req.dtype} support on {req.device}"
    return adapter.unsupported_reason(spec)


def prepare_case(req: CaseRequest, spec: OpSpec) -> PreparedCase:
    """Stage 1, outside any route: reference, inputs on the device, copies, snapshot, out= buffers,
    poisoned allocator blocks. Failing here is the harness's (or the environment's) problem."""
    try:
        inputs_cpu, want = reference(req.op, req.case, req.dtype)
    except CaseUnavailable as exc:  # this torch cannot build the case (e.g. an op_db sample it lacks)
        raise _NotRunnable("skip", f"case unavailable: {exc}") from None
    except Exception as exc:  # the reference itself failing is our problem, not the backend's
        raise _NotRunnable("infra", f"reference failed: {_short(exc)}") from None
    try:  # moving the inputs to the device is set-up: failing there is not the operator's fault
        args, kwargs = _to(inputs_cpu[0], req.device), _to(inputs_cpu[1], req.device)
    except Exception as exc:
        raise _NotRunnable("infra", f"inputs could not be placed on {req.device}: {_short(exc)}") from None
    seed = case_seed(req.op, req.case, req.dtype)
    kind = spec.op_kind
    try:  # set-up again (our copies and poison blocks): out of memory here is not the operator's
        call_args, call_kwargs = _clone(args), _clone(kwargs)
        prepared = PreparedCase(
            spec=spec,
            case=spec.case(req.case),
            seed=seed,
            inputs_cpu=inputs_cpu,
            want=want,
            args=args,
            kwargs=kwargs,
            call_args=call_args,
            call_kwargs=call_kwargs,
            snapshot=_clone(flatten(list(call_args)) + flatten(list(call_kwargs.values()))),
            out_buf=_out_buffers(want, req.device, req.dtype) if kind == "out" else None,
        )
        if kind == "random":
            prepared.again_args, prepared.again_kwargs = _clone(args), _clone(kwargs)
        if kind == "backward":
            prepared.cotangents = cotangents(spec, inputs_cpu, req.dtype, seed, req.device)
        if kind == "functional":  # out= buffers are the harness's: their dtype is not the backend's choice
            prepared.out_dtypes = output_dtypes(spec, inputs_cpu)
        if want is not None:
            poison_allocator(want, req.device, req.dtype)
    except Exception as exc:
        raise _NotRunnable("infra", f"set-up on {req.device} failed: {_short(exc)}") from None
    return prepared


def call_under_route(adapter: BackendAdapter, prepared: PreparedCase, req: CaseRequest) -> CallOutcome:
    """Stage 2: the call under test, and nothing else, inside the adapter's route."""
    spec, seed = prepared.spec, prepared.seed
    launches_before = adapter.kernel_launches()
    with adapter.route(spec) as impl, adapter.counting_launches():
        t0 = time.perf_counter()
        with perturbed_malloc(req.device):
            out = invoke(
                spec,
                impl,
                prepared.call_args,
                prepared.call_kwargs,
                req.dtype,
                seed,
                prepared.out_buf,
                prepared.cotangents,
            )
            adapter.synchronize()
        first_call_s = time.perf_counter() - t0
        again = None
        if spec.op_kind == "random":  # the same seed must give the same output: a second call
            again = invoke(spec, impl, prepared.again_args, prepared.again_kwargs, req.dtype, seed)
            adapter.synchronize()
    launches_after = adapter.kernel_launches()
    own = None if launches_before is None or launches_after is None else launches_after - launches_before
    return CallOutcome(out=out, first_call_s=first_call_s, again=again, own_launches=own)


def routing_evidence(adapter: BackendAdapter, spec: OpSpec, called: CallOutcome) -> dict[str, Any]:
    """How the case is known to have reached the backend's own code (`routing`): "launches" (its kernel
    count rose during the call), "declared" (it says it implements the op and cannot count), "unverified"
    (it can say neither), or "none" with a `fallback_reason` (it declares no such op, or its count did
    not rise)."""
    declared = adapter.implements(spec)
    found: dict[str, Any] = {"implements": declared}
    native = f"ran native torch, not {adapter.name}"
    if declared is False:
        return {
            **found,
            "routing": "none",
            "fallback_reason": f"{native}: it declares no {spec.name} of its own",
        }
    if called.own_launches is not None and adapter.counts_launches_of(spec):
        if called.own_launches > 0:
            return {**found, "routing": "launches"}
        why = f"{native}: none of its kernels ran during the call (kernel_launches() did not rise)"
        return {**found, "routing": "none", "fallback_reason": why}
    return {**found, "routing": "declared" if declared else "unverified"}


def judge_case(prepared: PreparedCase, called: CallOutcome, tol: Tolerance) -> dict[str, Any]:
    """Stage 3, outside any route: the kind's contract, then the values against the reference."""
    spec, out = prepared.spec, called.out
    check = check_contract(
        spec, out, prepared.call_args, prepared.call_kwargs, prepared.snapshot, prepared.out_buf
    )
    if check is None and prepared.out_dtypes is not None:
        check = check_dtypes(out, prepared.out_dtypes)
    if check is None and spec.op_kind == "random":
        check = _check_random(spec, out, called.again, prepared.args, prepared.kwargs)
    if check is None:
        if spec.op_kind == "inplace":
            out = (out, prepared.call_args[0])
        check = check_output(spec, prepared.case, out, prepared.want, prepared.inputs_cpu, tol)
    verdict: dict[str, Any] = {"max_abs_err": check.max_abs, "max_rel_err": check.max_rel}
    if not check.ok:
        verdict.update(status="fail", reason=check.detail)
    return verdict


def time_case(
    req: CaseRequest,
    adapter: BackendAdapter,
    baseline: BackendAdapter | None,
    prepared: PreparedCase,
    called: CallOutcome,
) -> dict[str, Any]:
    """Stage 4 (portability/perf/measure.py): call time and device time under the adapter's route, the
    baseline's under its own, in the case's cache state, `req.repeat` times; the figures derived from
    them (speedups in both modes, achieved rates, roofline_pct)."""
    spec, seed, out_buf = prepared.spec, prepared.seed, prepared.out_buf
    args, kwargs = prepared.args, prepared.kwargs
    work = perf.work_of(spec, prepared.case, req.dtype, called.out)
    settings = perf.settings_for(req, work)
    with adapter.route(spec) as impl:
        mine = perf.measure_call(adapter, _bind(spec, impl, args, kwargs, req.dtype, seed, out_buf), settings)
    base = None
    if baseline is not None:
        with baseline.route(spec) as base_impl:
            base_call = _bind(spec, base_impl, args, kwargs, req.dtype, seed, out_buf)
            base = perf.measure_call(baseline, base_call, settings)
    figures = perf.row_fields(mine, base, work, settings, req.dtype)
    figures["compile_s"] = max(0.0, called.first_call_s - mine.latency.median_ms / 1e3)
    return figures


def _check_random(spec: OpSpec, out: Any, again: Any, args: Any, kwargs: Any) -> Check:
    """A random op: the same seed gave the same output twice; the output follows its distribution."""
    for a, b in zip(flatten(out), flatten(again), strict=True):
        if isinstance(a, torch.Tensor) and not torch.equal(_bits(a), _bits(b)):
            return Check(False, detail="two calls under the same seed gave different outputs")
    if spec.distribution is None:
        return Check(False, detail="random op without a distribution to check")
    args_cpu, kwargs_cpu = _to(args, "cpu"), _to(kwargs, "cpu")
    why = spec.distribution.check(_to(out, "cpu"), args_cpu, kwargs_cpu)
    return Check(why is None, detail=why or "")


def _bind(
    spec: OpSpec, impl: Callable[..., Any], args: Any, kwargs: Any, dtype: str, seed: int, out: Any
) -> Callable[[], Any]:
    if spec.op_kind == "inplace":  # in-place ops would compound on one buffer: a fresh copy per call
        first = args[0]
        return lambda: impl(first.clone(), *args[1:], **kwargs)
    return lambda: invoke(spec, impl, args, kwargs, dtype, seed, out)
