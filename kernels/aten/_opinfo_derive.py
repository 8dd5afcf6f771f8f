"""Deriving the overload -> OpInfo table (kernels/aten/opinfo.py) for the installed FlagGems and torch:
`regenerate` runs the first samples of every op_db entry on the CPU, each variant (function, in-place,
out=, backward), under an OverloadRecorder, and keeps per registered overload the best-named match.
`python -m portability.kernels.aten._opinfo_derive [--module NAME]` writes the installed pair's table as
a checked-in kernels/aten/NAME.py; otherwise tables are derived on demand and cached
(kernels/aten/_opinfo_cache.py)."""

from __future__ import annotations

import itertools
from typing import Any

import torch
from portability.kernels.aten._opinfo_cache import Pairs

SAMPLES_PER_OP = 3
MAX_SAMPLE_NUMEL = 1 << 18
# OpInfo entries never used: random ops (checked statistically in hand_random.py), uninitialised memory.
RANDOM_OPINFOS = {
    "bernoulli", "cauchy", "exponential", "geometric", "log_normal", "normal", "uniform", "multinomial",
    "randn", "randn_like", "rand_like", "randint", "randint_like", "nn.functional.dropout",
    "nn.functional.dropout2d", "nn.functional.dropout3d", "nn.functional.alpha_dropout",
    "nn.functional.feature_alpha_dropout", "nn.functional.rrelu",
    "empty", "empty_like", "new_empty", "new_empty_strided", "empty_strided", "empty_permuted",
    "nn.functional.fractional_max_pool2d", "nn.functional.fractional_max_pool3d",
    "pca_lowrank", "svd_lowrank",
}  # fmt: skip


def _detach(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach()
    if isinstance(obj, (list, tuple)):
        return type(obj)(_detach(o) for o in obj)
    if isinstance(obj, dict):
        return {k: _detach(v) for k, v in obj.items()}
    return obj


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


def regenerate(registry: Pairs, samples_scanned: int = 10) -> dict[str, dict[str, Any]]:
    """Measure which OpInfo variant/sample reaches each of FlagGems' registered overloads (`registry`:
    (overload, function) pairs), see the module docstring."""
    import warnings

    from torch.testing._internal.common_methods_invocations import op_db

    try:  # fg-live moves coverage to portability/flaggems/
        from portability.flaggems.coverage import OverloadRecorder
    except ImportError:
        from portability.coverage import OverloadRecorder
    from portability.spec import DTYPES as NAMES

    warnings.filterwarnings("ignore")
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


def write_checked_in(module: str) -> str:
    """Derive the table for the installed FlagGems and torch and write it as kernels/aten/<module>.py."""
    import time
    from pathlib import Path

    from portability.kernels.aten._opinfo_cache import _flag_gems_dir, registry_pairs, table_key

    package = _flag_gems_dir()
    if package is None:
        raise SystemExit("flag_gems is not installed: nothing to derive a table for")
    pairs = registry_pairs()
    start = time.perf_counter()
    table = regenerate(pairs)
    took = time.perf_counter() - start
    key = table_key(pairs, package)
    target = Path(__file__).with_name(f"{module}.py")
    rows = "".join(f"    {k!r}: {v!r},\n" for k, v in sorted(table.items()))
    target.write_text(
        "# ruff: noqa: E501\n"
        '"""Generated by `python -m portability.kernels.aten._opinfo_derive` (see kernels/aten/opinfo.py):\n'
        "for each FlagGems-registered aten overload, the OpInfo entry, variant and samples (index, input\n"
        'elements, shapes) that reach it. KEY: what it was derived for. One overload per line."""\n\n'
        f"KEY = {key!r}\n# fmt: off\nTABLE = {{\n{rows}}}\n# fmt: on\n"
    )
    return f"{len(table)} of {len({k for k, _ in pairs})} overloads in {took:.1f} s -> {target}"


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Write the OpInfo table of the installed FlagGems.")
    parser.add_argument("--module", default="_opinfo_table", help="kernels/aten/<module>.py to write")
    print(write_checked_in(parser.parse_args().module))
