"""Run one operator case through one adapter: inputs, reference, check, timing -> a result row."""

from __future__ import annotations

import contextlib
import ctypes
import math
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch

from portability.backends.base import BackendAdapter
from portability.catalog import load_catalog
from portability.config import Tolerance
from portability.spec import DTYPES, Case, OpSpec, TargetDevice, case_seed, make_inputs

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
        outs = [o for o in _flat(out) if isinstance(o, torch.Tensor) and o.requires_grad]
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
    inputs = _flat(list(call_args)) + _flat(list(call_kwargs.values()))
    first = 0
    if kind == "inplace":
        if not _same_tensor(got, call_args[0]):
            what = "a new tensor" if isinstance(got, torch.Tensor) else type(got).__name__
            return Check(False, detail=f"in-place op returned {what} instead of its mutated first input")
        first = 1  # the first input is meant to be written
    if kind == "out":
        got_l, out_l = _flat(got), _flat(out)
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


def _flat(out: Any) -> list[Any]:
    if isinstance(out, (list, tuple)):
        return [x for o in out for x in _flat(o)]
    return [out]


@dataclass
class Check:
    ok: bool
    max_abs: float | None = None
    max_rel: float | None = None
    detail: str = ""


def _allclose(got: torch.Tensor, want: torch.Tensor, tol: Tolerance) -> Check:
    if got.shape != want.shape:
        return Check(False, detail=f"shape {tuple(got.shape)} != reference {tuple(want.shape)}")
    if got.numel() == 0:
        return Check(True, 0.0, 0.0)
    g = got.detach().to("cpu", torch.float64)
    w = want.detach().to("cpu", torch.float64)
    if got.dtype == torch.bool or not (got.is_floating_point() or got.is_complex()):
        equal = bool(torch.equal(g, w))
        diff = float((g - w).abs().max())
        return Check(equal, diff, None, "" if equal else f"{int((g != w).sum())} element(s) differ")
    if got.is_floating_point():  # a reference beyond the output dtype's range is, correctly rounded, ±inf
        big = torch.finfo(got.dtype).max
        w = torch.where(w.abs() > big, w.sign() * float("inf"), w)
    nan_mismatch = torch.isnan(g) != torch.isnan(w)
    finite = torch.isfinite(g) & torch.isfinite(w)
    inf_mismatch = ~torch.isnan(g) & ~torch.isnan(w) & ~finite & (g != w)
    err = torch.where(finite, (g - w).abs(), torch.zeros_like(g))
    bound = tol.atol + tol.rtol * w.abs()
    bad = (finite & (err > bound)) | nan_mismatch | inf_mismatch
    max_abs = float(err.max())
    big = finite & (w.abs() > tol.atol)
    max_rel = float((err[big] / w.abs()[big]).max()) if bool(big.any()) else 0.0
    n_bad = int(bad.sum())
    detail = ""
    if n_bad:
        detail = f"{n_bad}/{g.numel()} element(s) outside atol={tol.atol:g} rtol={tol.rtol:g}"
        if int(nan_mismatch.sum()):
            detail += f" ({int(nan_mismatch.sum())} NaN where the reference has none, or the reverse)"
    return Check(n_bad == 0, max_abs, max_rel, detail)


def _gather_values(inp: torch.Tensor, idx: torch.Tensor, dim: int) -> torch.Tensor:
    if inp.dim() == 0:  # a 0-dim input: the only valid index is 0
        value = inp.to("cpu", torch.float64)
        return torch.where(idx.to("cpu") == 0, value, torch.full_like(value, float("nan"))).reshape(idx.shape)
    if idx.dim() == 0 or inp.dim() == idx.dim():
        return (
            inp.to("cpu", torch.float64)
            .reshape(-1 if idx.dim() == 0 else inp.shape)
            .gather(dim if idx.dim() else 0, idx.to("cpu").reshape(-1 if idx.dim() == 0 else idx.shape))
        )
    return inp.to("cpu", torch.float64).gather(dim, idx.to("cpu").unsqueeze(dim)).squeeze(dim)


def check_output(
    spec: OpSpec, case: Case, got: Any, want: Any, inputs: tuple[Any, Any], tol: Tolerance
) -> Check:
    """Compare an output with the reference according to the spec's `compare` mode."""
    if spec.compare == "values_of_indices":
        # Ties make raw indices legitimately differ: values must match, and the returned indices must
        # point at input elements equal to the returned values.
        args, kwargs = inputs
        at = spec.dim_arg
        dim = kwargs.get("dim", args[at] if len(args) > at and isinstance(args[at], int) else -1)
        dim = -1 if dim is None else dim
        if isinstance(got, torch.Tensor) and not got.is_floating_point():  # argmax-like: indices only
            source = args[0]
            return _allclose(
                _gather_values(source, got, dim), _gather_values(source.double(), want, dim), tol
            )
        got_v, got_i = got[0], got[1]
        want_v = want[0]
        values = _allclose(got_v, want_v, tol)
        if not values.ok:
            return values
        pointed = _gather_values(args[0], got_i, dim)
        consistent = _allclose(pointed, got_v.to("cpu", torch.float64), Tolerance(0.0, 0.0))
        if not consistent.ok:
            return Check(
                False,
                values.max_abs,
                values.max_rel,
                "indices do not point at the returned values: " + consistent.detail,
            )
        return values
    if spec.compare == "unordered_rows":  # a set of rows (nonzero): compare them sorted
        return _allclose(_sorted_rows(_flat(got)[0]), _sorted_rows(_flat(want)[0]), Tolerance(0.0, 0.0))
    if spec.compare == "unique":
        return _check_unique(got, want, inputs[0][0], tol)
    if spec.compare == "sorted_values":
        got_t, want_t = (
            torch.sort(t.flatten().to("cpu", torch.float64)).values for t in (_flat(got)[0], _flat(want)[0])
        )
        return _allclose(got_t, want_t, tol)
    got_l, want_l = _flat(got), _flat(want)
    if len(got_l) != len(want_l):
        return Check(False, detail=f"{len(got_l)} outputs, reference has {len(want_l)}")
    worst = Check(True, 0.0, 0.0)
    for g, w in zip(got_l, want_l, strict=True):
        if not isinstance(w, torch.Tensor):
            same = (
                g == w if not isinstance(w, float) else math.isclose(g, w, rel_tol=tol.rtol, abs_tol=tol.atol)
            )
            if not same:
                return Check(False, detail=f"got {g!r}, reference {w!r}")
            continue
        if not isinstance(g, torch.Tensor):
            return Check(False, detail=f"got {type(g).__name__}, reference is a tensor")
        mode_tol = Tolerance(0.0, 0.0) if spec.compare == "exact" else tol
        c = _allclose(g, w, mode_tol)
        if not c.ok:
            return c
        worst = Check(True, max(worst.max_abs or 0, c.max_abs or 0), max(worst.max_rel or 0, c.max_rel or 0))
    return worst


def _sorted_rows(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().to("cpu", torch.float64)
    rows = t.reshape(t.shape[0], -1) if t.dim() else t.reshape(1, 1)
    order = sorted(range(rows.shape[0]), key=lambda i: rows[i].tolist())
    return rows[order] if order else rows


def _check_unique(got: Any, want: Any, source: torch.Tensor, tol: Tolerance) -> Check:
    """(values[, inverse][, counts]) in any order: the same set of values, inverse indices that rebuild
    the input from the returned values, and each value's count as in the reference."""
    got_l, want_l = _flat(got), _flat(want)
    gv, wv = got_l[0].detach().to("cpu", torch.float64), want_l[0].detach().to("cpu", torch.float64)
    order_g, order_w = torch.argsort(gv), torch.argsort(wv)
    values = _allclose(gv[order_g], wv[order_w], tol)
    if not values.ok:
        return Check(False, detail="unique values differ: " + values.detail)
    rest = got_l[1:]
    if (
        rest
        and rest[0].shape == source.shape
        and rest[0].dtype == torch.int64
        and want_l[1].shape == source.shape
    ):
        rebuilt = gv[rest[0].to("cpu")]
        c = _allclose(rebuilt, source.to("cpu", torch.float64), Tolerance(0.0, 0.0))
        if not c.ok:
            return Check(False, detail="inverse indices do not rebuild the input: " + c.detail)
        rest = rest[1:]
    if rest:  # counts, in the order of the values
        c = _allclose(rest[0].to("cpu")[order_g], want_l[-1].to("cpu")[order_w], Tolerance(0.0, 0.0))
        if not c.ok:
            return Check(False, detail="counts differ: " + c.detail)
    return values


# Outputs must not start out holding stale, possibly correct, values: an implementation that leaves part
# of its output unwritten has to fail the check. Two mechanisms, both applied to the checked call only:
#
# - Accelerators (CUDA, and the other torch device allocators, which are caching allocators too):
#   `poison_allocator` fills blocks the size of each expected output with NaN (or -7 / True for
#   integer/bool outputs) and frees them. The caching allocator keeps freed blocks in its pool and hands
#   the best-fitting one to the next allocation of that size on the stream, so the backend's output
#   buffer starts as NaN.
# - CPU: freed heap memory is not reliably reused (chunks coalesce, and large buffers are fresh mmap
#   pages, zero-filled by the kernel), so `perturbed_malloc` also turns on glibc's M_PERTURB (the
#   MALLOC_PERTURB_ knob, set at run time through mallopt) for the call: every block malloc hands out is
#   filled with 0x7f bytes (NaN in fp16, 3.4e38 in fp32/bf16, huge integers): heap and mmap'd ones alike
#   (not buffers under ~1 KiB served from glibc's per-thread cache). Only around the checked
#   call, never while timing. Not glibc (macOS, musl): the block poisoning alone.
MALLOC_PERTURB_BYTE = 0x80  # glibc fills allocations with the complement: 0x7f
_M_PERTURB = -6  # mallopt parameter number (malloc.h)


@contextlib.contextmanager
def perturbed_malloc(device: str) -> Iterator[None]:
    """On a CPU device under glibc: every malloc inside the block returns memory filled with 0x7f."""
    mallopt = _mallopt() if device.split(":")[0] == "cpu" else None
    on = bool(mallopt and mallopt(_M_PERTURB, MALLOC_PERTURB_BYTE) == 1)
    try:
        yield
    finally:
        if on:
            mallopt(_M_PERTURB, 0)  # type: ignore[misc]


@lru_cache(maxsize=1)
def _mallopt() -> Callable[[int, int], int] | None:
    try:
        fn = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return fn


def poison_allocator(want: Any, device: str, dtype: str) -> None:
    """Fill, then free, device blocks the size of the expected outputs (see the comment above)."""
    from portability.spec import DTYPES

    for ref in _flat(want):
        if not isinstance(ref, torch.Tensor) or ref.numel() == 0:
            continue
        target = DTYPES[dtype] if ref.is_floating_point() else ref.dtype
        fill: float | int | bool = (
            float("nan") if target.is_floating_point else (True if target == torch.bool else -7)
        )
        block = torch.full(ref.shape, fill, dtype=target, device=device)
        del block


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
                snapshot = _clone(_flat(list(call_args)) + _flat(list(call_kwargs.values())))
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
            timing = adapter.time(
                _bind(spec, impl, args, kwargs, req.dtype, seed, out_buf),
                req.warmup,
                req.repetitions,
                req.budget_s,
            )
        row.update(
            latency_ms=timing.median_ms,
            latency_p10_ms=timing.p10_ms,
            latency_p90_ms=timing.p90_ms,
            reps=timing.reps,
            compile_s=max(0.0, first_call_s - timing.median_ms / 1e3),
        )
        if baseline is not None:
            with baseline.route(spec) as base_impl:
                base = baseline.time(
                    _bind(spec, base_impl, args, kwargs, req.dtype, seed, out_buf),
                    req.warmup,
                    req.repetitions,
                    req.budget_s,
                )
            row["baseline_ms"] = base.median_ms
        else:
            row["baseline_ms"] = timing.median_ms
        if timing.median_ms > 0:
            row["speedup"] = row["baseline_ms"] / timing.median_ms
            seconds = timing.median_ms / 1e3
            if spec.bytes is not None:
                row["gbps"] = spec.bytes(case, req.dtype, out) / seconds / 1e9
            if spec.flops is not None:
                row["tflops"] = spec.flops(case, req.dtype, out) / seconds / 1e12
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
    for a, b in zip(_flat(out), _flat(again), strict=True):
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
