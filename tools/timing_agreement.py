#!/usr/bin/env python3
"""Agreement of the matrix's device time with triton.testing.do_bench on the same inputs (issue #21).

For each backend, operator and case (the Qwen3-path operators by default, at one dtype), the call is
built exactly as a matrix case builds it (the spec's seeded inputs on the device, routed through the
backend's adapter), then timed by the matrix (`portability.perf.measure`: call time `latency_ms`, device
time `device_ms` from the profiler, `graph_ms` from a CUDA graph replay, in the given cache state) and by
`triton.testing.do_bench` (median, which flushes the L2 before each call as the cold state does). The table
says per case whether device_ms is within ±TOLERANCE of do_bench. Where Triton has no active GPU driver
(a CPU host) the do_bench column says so and the matrix's side still runs, so the tool is tested in CI.

usage: python tools/timing_agreement.py --device cuda --backends torch,flaggems --dtype bf16 \
           [--ops mm,rms_norm,...] [--cache cold|warm] [--out DIR]     (writes DIR/agreement.md + .json)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout, as tools/gpu-run.sh does

QWEN3_OPS = (
    "mm,rms_norm,silu_and_mul,softmax,add,mul,embedding,rotary_embedding,topk,argmax"  # issue #21's list
)
TOLERANCE = 0.05  # ±5 %
HEADERS = [
    "backend",
    "op",
    "case",
    "latency_ms",
    "device_ms",
    "graph_ms",
    "do_bench_ms",
    "device/do_bench",
    "within ±5 %",
    "kernels",
]


def _to_device(obj: Any, device: str) -> Any:
    import torch

    from portability.spec import TargetDevice

    if isinstance(obj, TargetDevice):
        return device
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    return obj


def do_bench_ms(fn: Any) -> tuple[float | None, str]:
    """triton.testing.do_bench's median in ms, or None and why (no GPU driver for Triton here)."""
    try:
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=25, rep=100, return_mode="median")), ""
    except Exception as exc:  # a CPU host: Triton finds no active driver
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"


def measure_case(adapter: Any, spec: Any, case: Any, dtype: str, cache: str, reps: int) -> dict[str, Any]:
    """Both sides' figures for one case through one adapter."""
    from portability.perf.measure import TimingSettings, measure_call
    from portability.spec import case_seed, make_inputs

    args, kwargs = make_inputs(spec, case, dtype)
    args, kwargs = _to_device(args, adapter.device), _to_device(kwargs, adapter.device)
    with adapter.route(spec) as impl:
        if spec.op_kind == "inplace":  # a fresh copy per call, as the matrix times it
            first = args[0]

            def call() -> Any:
                return impl(first.clone(), *args[1:], **kwargs)
        else:
            from portability.run.case import invoke

            seed = case_seed(spec.name, case.name, dtype)

            def call() -> Any:
                return invoke(spec, impl, args, kwargs, dtype, seed)

        call()
        adapter.synchronize()
        settings = TimingSettings(warmup=5, repetitions=reps, budget_s=2.0, cache=cache)
        perf = measure_call(adapter, call, settings)
        anchor, why = do_bench_ms(call)
    device = perf.device_ms
    ratio = device / anchor if device and anchor else None
    return {
        "latency_ms": perf.latency.median_ms,
        "device_ms": device,
        "graph_ms": perf.graph.median_ms if perf.graph else None,
        "graph_note": perf.graph.reason if perf.graph else "",
        "do_bench_ms": anchor,
        "do_bench_note": why,
        "ratio": ratio,
        "within": None if ratio is None else abs(ratio - 1) <= TOLERANCE,
        "kernels_per_call": perf.device[0].kernels_per_call if perf.device else None,
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    from portability.catalog import load_catalog
    from portability.registry import adapter_class

    catalog = load_catalog()
    ops = [o for o in args.ops.split(",") if o]
    unknown = [o for o in ops if o not in catalog]
    if unknown:
        raise SystemExit(f"--ops: unknown operator(s) {', '.join(unknown)}")
    rows: list[dict[str, Any]] = []
    for backend in [b for b in args.backends.split(",") if b]:
        adapter = adapter_class(backend)(args.device, {})
        found = adapter.probe()
        if not found.available:
            rows.append({"backend": backend, "op": "-", "case": "-", "note": f"unavailable: {found.reason}"})
            continue
        for op in ops:
            spec = catalog[op]
            for case in spec.cases:
                if args.dtype not in spec.dtypes or case.input_bytes(args.dtype) == 0:
                    continue  # empty cases time nothing
                started = time.perf_counter()
                try:
                    figures = measure_case(adapter, spec, case, args.dtype, args.cache, args.reps)
                except Exception as exc:  # one case's failure is a row, not the end of the table
                    figures = {"note": f"{type(exc).__name__}: {str(exc)[:200]}"}
                rows.append({"backend": backend, "op": op, "case": case.name, **figures})
                sys.stderr.write(f"{backend} {op} [{case.name}] {time.perf_counter() - started:.1f}s\n")
    return rows


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def render(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    from tabulate import tabulate

    table = [
        [
            r["backend"],
            r["op"],
            r["case"],
            *(_fmt(r.get(k)) for k in ("latency_ms", "device_ms", "graph_ms", "do_bench_ms", "ratio")),
            _fmt(r.get("within")),
            _fmt(r.get("kernels_per_call")),
        ]
        for r in rows
    ]
    compared = [r for r in rows if r.get("within") is not None]
    agree = sum(1 for r in compared if r["within"])
    ratios = [r["ratio"] for r in compared]
    notes = sorted({r.get("do_bench_note") or r.get("note") or "" for r in rows} - {""})
    lines = [
        f"# device_ms against triton.testing.do_bench ({args.device}, {args.dtype}, cache {args.cache})",
        "",
        f"{agree}/{len(compared)} cases within ±{TOLERANCE:.0%}"
        + (f"; median device/do_bench {statistics.median(ratios):.3f}" if ratios else "")
        + ".",
        "",
        tabulate(table, headers=HEADERS, tablefmt="github"),
        "",
        *(f"- {n}" for n in notes),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--backends", default="torch,flaggems")
    parser.add_argument("--dtype", default="bf16")
    parser.add_argument("--ops", default=QWEN3_OPS)
    parser.add_argument("--cache", choices=["cold", "warm"], default="cold", help="cold matches do_bench")
    parser.add_argument("--reps", type=int, default=50, help="timed repetitions of the matrix's loop")
    parser.add_argument("--out", default=None, help="directory for agreement.md and agreement.json")
    args = parser.parse_args(argv)
    rows = run(args)
    text = render(rows, args)
    sys.stdout.write(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "agreement.md").write_text(text)
        (Path(args.out) / "agreement.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
