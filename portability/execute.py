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
from portability.spec import Case, OpSpec, make_inputs

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
    """(inputs on CPU, reference output on CPU): the spec's call (or `ref`) on float64-upcast inputs."""
    spec = load_catalog()[op]
    args, kwargs = make_inputs(spec, spec.case(case), dtype)
    fn = spec.ref or spec.fn
    up_args, up_kwargs = _to(args, "cpu", upcast=True), _to(kwargs, "cpu", upcast=True)
    out = fn(*up_args, **up_kwargs)
    if spec.mutates:
        out = (out, up_args[0])
    return (args, kwargs), out


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
        dim = kwargs.get("dim", args[2] if len(args) > 2 and isinstance(args[2], int) else -1)
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
    try:
        with adapter.route(spec) as impl:
            try:  # set-up again (our copies and poison blocks): out of memory here is not the operator's
                call_args, call_kwargs = _clone(args), _clone(kwargs)
                poison_allocator(want, req.device, req.dtype)
            except Exception as exc:
                raise _SetupFailed(f"set-up on {req.device} failed: {_short(exc)}") from None
            t0 = time.perf_counter()
            with perturbed_malloc(req.device):
                out = impl(*call_args, **call_kwargs)
                adapter.synchronize()
            first_call_s = time.perf_counter() - t0
            if spec.mutates:
                out = (out, call_args[0])
            check = check_output(spec, case, out, want, (args_cpu, kwargs_cpu), tol)
            row.update(max_abs_err=check.max_abs, max_rel_err=check.max_rel)
            if not check.ok:
                row.update(status="fail", reason=check.detail)
            timing = adapter.time(
                _bind(impl, args, kwargs, spec.mutates), req.warmup, req.repetitions, req.budget_s
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
                    _bind(base_impl, args, kwargs, spec.mutates), req.warmup, req.repetitions, req.budget_s
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


def _bind(impl: Callable[..., Any], args: Any, kwargs: Any, mutates: bool) -> Callable[[], Any]:
    if mutates:  # in-place ops would compound on one buffer: give each call a fresh copy of the target
        first = args[0]
        return lambda: impl(first.clone(), *args[1:], **kwargs)
    return lambda: impl(*args, **kwargs)
