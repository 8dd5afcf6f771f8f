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
from portability.spec import DTYPES, CaseUnavailable, OpSpec, TargetDevice, case_seed, make_inputs

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


def vjp(fn: Callable[..., Any], args: Any, kwargs: Any, dtype: str, seed: int) -> tuple[Any, ...]:
    """Gradients of `fn`'s floating-point outputs, contracted with a seeded cotangent, with respect to
    its inputs that require grad (all floating-point inputs if none does): what a backward kernel
    computes. The cotangent is drawn on the CPU and rounded to the case dtype, so the float64 reference
    and the backend see the same numbers. Unused inputs get zeros."""
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
        gen = torch.Generator().manual_seed(seed ^ 0x5EED)
        cots = [
            (torch.rand(o.shape, generator=gen, dtype=torch.float64) * 2 - 1)
            .to(DTYPES[dtype] if DTYPES[dtype].is_floating_point else torch.float32)
            .to(o.device, o.dtype)
            for o in outs
        ]
        grads = torch.autograd.grad(
            outs, list(leaves.values()), cots, allow_unused=True, materialize_grads=True
        )
    return tuple(g.detach() for g in grads)


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
    spec: OpSpec, impl: Callable[..., Any], args: Any, kwargs: Any, dtype: str, seed: int, out: Any = None
) -> Any:
    """One call of the op under test, as its kind requires (see spec.OpKind)."""
    kind = spec.op_kind
    if kind == "out":
        return impl(*args, **kwargs, out=out)
    if kind == "backward":
        return vjp(impl, args, kwargs, dtype, seed)
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


class _SetupFailed(Exception):
    """The harness's own preparation of a case failed (see run_case): the row says `infra`."""


def _oom_types() -> tuple[type[BaseException], ...]:
    return (torch.OutOfMemoryError,) if hasattr(torch, "OutOfMemoryError") else ()


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" (at {tb[-1].filename.rsplit('/', 1)[-1]}:{tb[-1].lineno})" if tb else ""
    return (text[: MAX_REASON_CHARS - len(where)] + where).strip()


def run_case(req: CaseRequest, adapter: BackendAdapter, baseline: BackendAdapter | None) -> dict[str, Any]:
    """Execute one case; never raises for operator faults (they become statuses)."""
    spec = load_catalog()[req.op]
    case = spec.case(req.case)
    row: dict[str, Any] = {"status": "pass", "reason": None, "atol": req.atol, "rtol": req.rtol}
    if req.dtype not in adapter.supported_dtypes():
        return {
            **row,
            "status": "unsupported",
            "reason": f"{adapter.name} declares no {req.dtype} support on {req.device}",
        }
    why = adapter.unsupported_reason(spec)
    if why:
        return {**row, "status": "unsupported", "reason": why}
    tol = Tolerance(req.atol, req.rtol)
    try:
        (args_cpu, kwargs_cpu), want = reference(req.op, req.case, req.dtype)
    except CaseUnavailable as exc:  # this torch cannot build the case (e.g. an op_db sample it lacks)
        return {**row, "status": "skip", "reason": f"case unavailable: {exc}"}
    except Exception as exc:  # the reference itself failing is our problem, not the backend's
        return {**row, "status": "infra", "reason": f"reference failed: {_short(exc)}"}
    try:  # moving the inputs to the device is set-up: failing there is not the operator's fault
        args, kwargs = _to(args_cpu, req.device), _to(kwargs_cpu, req.device)
    except Exception as exc:
        why = f"inputs could not be placed on {req.device}: {_short(exc)}"
        return {**row, "status": "infra", "reason": why}
    seed = case_seed(req.op, req.case, req.dtype)
    kind = spec.op_kind
    try:
        with adapter.route(spec) as impl:
            try:  # set-up again (our copies and poison blocks): out of memory here is not the operator's
                call_args, call_kwargs = _clone(args), _clone(kwargs)
                snapshot = _clone(flatten(list(call_args)) + flatten(list(call_kwargs.values())))
                out_buf = _out_buffers(want, req.device, req.dtype) if kind == "out" else None
                if want is not None:
                    poison_allocator(want, req.device, req.dtype)
            except Exception as exc:
                raise _SetupFailed(f"set-up on {req.device} failed: {_short(exc)}") from None
            t0 = time.perf_counter()
            with perturbed_malloc(req.device):
                out = invoke(spec, impl, call_args, call_kwargs, req.dtype, seed, out_buf)
                adapter.synchronize()
            first_call_s = time.perf_counter() - t0
            check = check_contract(spec, out, call_args, call_kwargs, snapshot, out_buf)
            if check is None and kind == "random":
                check = _check_random(spec, impl, out, args, kwargs, req.dtype, seed)
            if check is None:
                if kind == "inplace":
                    out = (out, call_args[0])
                check = check_output(spec, case, out, want, (args_cpu, kwargs_cpu), tol)
            row.update(max_abs_err=check.max_abs, max_rel_err=check.max_rel)
            if not check.ok:
                row.update(status="fail", reason=check.detail)
            # the timing stage (portability/perf/measure.py): both modes, cache state, --repeat
            work = perf.work_of(spec, case, req.dtype, out)
            settings = perf.settings_for(req, work)
            mine = perf.measure_call(
                adapter, _bind(spec, impl, args, kwargs, req.dtype, seed, out_buf), settings
            )
        base = None
        if baseline is not None:
            with baseline.route(spec) as base_impl:
                base_call = _bind(spec, base_impl, args, kwargs, req.dtype, seed, out_buf)
                base = perf.measure_call(baseline, base_call, settings)
        row.update(perf.row_fields(mine, base, work, settings, req.dtype))
        row["compile_s"] = max(0.0, first_call_s - mine.latency.median_ms / 1e3)
    except _SetupFailed as exc:
        row.update(status="infra", reason=str(exc))
    except _oom_types() as exc:
        row.update(status="oom", reason=_short(exc))
    except Exception as exc:
        row.update(status="error", reason=_short(exc))
    return row


def _check_random(
    spec: OpSpec, impl: Callable[..., Any], out: Any, args: Any, kwargs: Any, dtype: str, seed: int
) -> Check:
    """A random op: the same seed gives the same output; the output follows its distribution."""
    again = invoke(spec, impl, _clone(args), _clone(kwargs), dtype, seed)
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
