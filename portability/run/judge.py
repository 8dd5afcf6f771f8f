"""How a backend's output is judged against the float64 reference: elementwise within tolerance,
or by the spec's compare mode (values of indices with ties, sorted values, unordered rows, unique)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from portability.matrix.config import Tolerance
from portability.spec import Case, OpSpec


def flatten(out: Any) -> list[Any]:
    """Nested tuples/lists of outputs as one flat list."""
    if isinstance(out, (list, tuple)):
        return [x for o in out for x in flatten(o)]
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
        return _allclose(_sorted_rows(flatten(got)[0]), _sorted_rows(flatten(want)[0]), Tolerance(0.0, 0.0))
    if spec.compare == "unique":
        return _check_unique(got, want, inputs[0][0], tol)
    if spec.compare == "sorted_values":
        got_t, want_t = (
            torch.sort(t.flatten().to("cpu", torch.float64)).values
            for t in (flatten(got)[0], flatten(want)[0])
        )
        return _allclose(got_t, want_t, tol)
    got_l, want_l = flatten(got), flatten(want)
    if len(got_l) != len(want_l):
        return Check(False, detail=f"{len(got_l)} outputs, reference has {len(want_l)}")
    worst = Check(True, 0.0, 0.0)
    for position, (g, w) in enumerate(zip(got_l, want_l, strict=True)):
        if position in spec.unspecified_if_empty and isinstance(w, torch.Tensor) and w.numel() == 0:
            continue
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
    got_l, want_l = flatten(got), flatten(want)
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
