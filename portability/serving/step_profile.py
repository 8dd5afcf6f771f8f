"""Where a serving cell's time goes: one steady-state prefill step and one decode step, profiled.

Worker side, `profile_steps` times each step (after warm-up, without the profiler, over at least
`MIN_TIMED_S`), then runs it `repeats` times again under `torch.profiler` with the device's activity
(CUDA, XPU, PrivateUse1... whatever the device type has; the CPU alone on CPU) and keeps, per aten
operator, its self time per step (device time on an accelerator, CPU time on the CPU) and its calls
per step. The hf engine profiles in its throughput run, after the timed batch (one model load). A
FlagGems function registered into aten's dispatch runs inside the aten operator it replaces, so its time
is that operator's self time.

Runner side, `attribute_gap` sets a flaggems cell's profile against the torch cell's (same engine, mode,
device, tensor parallelism and settings): per phase, the step time added, and the operators that add the
most, each with ms per step added, its share of the gap and its calls per step, plus the FlagGems
functions registered for it (those FlagGems' call log saw called, when a log exists).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

#: operators kept per phase in a row (the rest are small; a row must stay small)
KEPT_OPS = 40
#: operators named per phase in the attribution
NAMED_OPS = 3
#: the step time is the mean over at least this long (and at least `repeats` steps)
MIN_TIMED_S = 0.5


def _activities(device: str) -> list[Any]:
    """CPU plus the profiler activity of the device type, where torch.profiler has one."""
    from torch.profiler import ProfilerActivity, supported_activities

    device_type = device.split(":")[0]
    wanted = {"cuda": "CUDA", "xpu": "XPU", "mtia": "MTIA", "hpu": "HPU"}.get(device_type, "PRIVATEUSE1")
    extra = [a for a in supported_activities() if a.name == wanted and device_type != "cpu"]
    return [ProfilerActivity.CPU, *extra]


def _self_us(event: Any, on_device: bool) -> float:
    if not on_device:
        return float(event.self_cpu_time_total)
    device_total = getattr(event, "self_device_time_total", None)
    return float(device_total if device_total is not None else event.self_cuda_time_total)


def profile_steps(
    steps: dict[str, Callable[[], None]], device: str, warmup: int = 2, repeats: int = 3
) -> dict[str, Any]:
    """{phase: {"step_ms", "ops": {aten op: {"ms", "calls"}}}} per step, for each step callable."""
    from torch.profiler import profile

    from portability import devices

    on_device = device.split(":")[0] != "cpu"
    for step in steps.values():
        for _ in range(warmup):
            step()
    devices.synchronize(device)
    result: dict[str, Any] = {"time": "device" if on_device else "cpu", "repeats": repeats}
    for phase, step in steps.items():
        t0, timed = time.perf_counter(), 0
        while timed < repeats or time.perf_counter() - t0 < MIN_TIMED_S:  # a window past timer noise
            step()
            timed += 1
            devices.synchronize(device)
        step_ms = (time.perf_counter() - t0) * 1e3 / timed
        with profile(activities=_activities(device)) as prof:
            for _ in range(repeats):
                step()
            devices.synchronize(device)
        ops = {
            e.key.removeprefix("aten::"): {
                "ms": _self_us(e, on_device) / 1e3 / repeats,
                "calls": e.count / repeats,
            }
            for e in prof.key_averages()
            if e.key.startswith("aten::")
        }
        kept = sorted(ops, key=lambda name: -ops[name]["ms"])[:KEPT_OPS]
        result[phase] = {"step_ms": step_ms, "ops": {name: ops[name] for name in kept}}
    return result


def _flaggems_names(functions: list[str], called: list[str] | None) -> list[str]:
    """`module.function` names, kept to those whose module FlagGems' call log saw when it exists."""
    if called is None:
        return functions
    modules = {name.rpartition(".")[0] for name in called}
    return [f for f in functions if f.rpartition(".")[0] in modules]


def attribute_gap(
    base: dict[str, Any], other: dict[str, Any], called: list[str] | None = None
) -> dict[str, Any]:
    """Per phase: torch's and the cell's step ms, the gap, and the operators adding the most."""
    functions: dict[str, list[str]] = other.get("flaggems_functions") or {}
    phases: dict[str, Any] = {}
    for phase in ("prefill", "decode"):
        if phase not in base or phase not in other:
            continue
        b, o = base[phase], other[phase]
        gap = o["step_ms"] - b["step_ms"]
        zero = {"ms": 0.0, "calls": 0.0}
        added = {
            op: o["ops"].get(op, zero)["ms"] - b["ops"].get(op, zero)["ms"] for op in {*b["ops"], *o["ops"]}
        }
        # no gap, nothing to attribute: a cell as fast as torch is not explained by its slowest operators
        top = (
            [op for op in sorted(added, key=lambda op: -added[op]) if added[op] > 0][:NAMED_OPS]
            if gap > 0
            else []
        )
        phases[phase] = {
            "torch_step_ms": b["step_ms"],
            "step_ms": o["step_ms"],
            "gap_ms": gap,
            "ops": [
                {
                    "op": op,
                    "added_ms": added[op],
                    "share": added[op] / gap if gap > 0 else None,
                    "calls": o["ops"].get(op, zero)["calls"],
                    "torch_calls": b["ops"].get(op, zero)["calls"],
                    "flaggems": _flaggems_names(functions.get(op, []), called),
                }
                for op in top
            ],
        }
    return phases


def main_share(gap: dict[str, Any]) -> str:
    """One phrase naming the operator with the largest share of the larger gap, or ''."""
    phases = [(p, g) for p, g in gap.items() if g["gap_ms"] > 0 and g["ops"]]
    if not phases:
        return ""
    phase, g = max(phases, key=lambda item: item[1]["gap_ms"])
    top = g["ops"][0]
    share = f" ({top['share']:.0%} of the gap)" if top["share"] is not None else ""
    steps = f"{phase} step {g['torch_step_ms']:.1f} -> {g['step_ms']:.1f} ms"
    return f"{steps}: {top['op']} +{top['added_ms']:.1f} ms{share}"
