"""Device time: what the device spent executing one call, without the host's dispatch in between.

Two views, both device-generic where torch offers it:

- `profiled_device_time`: one short torch.profiler pass after the timed repetitions (never inside the
  latency loop). Each call runs inside a `record_function` range, started on an idle device (synchronised
  after the cache flush) and synchronised before the range ends, so the device activity that starts
  inside the range is that call's: its kernels (and memsets/copies) are summed and counted. The device's
  activity is the profiler's CUDA, XPU or PrivateUse1 (npu, mlu, musa, ...) activity. On the CPU there is
  no device activity: the time is the self time of the aten operators inside the range (the operators'
  own compute, without the Python around them), and the kernels counted are the aten operators the call
  made (not those they call in turn), so the same path runs in CI.
- `graph_replay_time`: on CUDA, the call captured once into a CUDA graph and replayed between two events:
  the per-call time with no launch overhead at all. Calls that cannot be captured (a host sync, a
  data-dependent shape) report why instead.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile, record_function

from portability.devices import device_type_of, synchronize

CALL_RANGE = "portability::call"


@dataclass(frozen=True)
class DeviceTime:
    median_ms: float
    kernels_per_call: float
    calls: int
    source: str  # "profiler:<activity>" or "cpu self time"


def _activity(device_type: str) -> ProfilerActivity | None:
    """The profiler activity that records this device type's work, or None (CPU: none needed)."""
    if device_type == "cpu":
        return None
    if device_type in ("cuda", "hip"):
        return ProfilerActivity.CUDA
    if device_type == "xpu":
        return ProfilerActivity.XPU
    return getattr(ProfilerActivity, "PrivateUse1", None)  # npu, mlu, musa, ... register as PrivateUse1


def profiled_device_time(
    fn: Callable[[], object], device: str, calls: int, flush: Callable[[], None] | None = None
) -> DeviceTime | None:
    """Median per-call device time of `calls` calls of `fn` and the kernels each launched, or None when
    this torch cannot profile the device's activity."""
    device_type = device_type_of(device)
    activity = _activity(device_type)
    if device_type != "cpu" and (activity is None or activity not in torch.profiler.supported_activities()):
        return None
    activities = [ProfilerActivity.CPU] + ([activity] if activity is not None else [])
    prof = profile(activities=activities)
    prof.start()  # start/stop, not the context manager: its exit costs ~0.1 s more per case on the CPU
    try:
        for _ in range(calls):
            if flush is not None:
                flush()
            synchronize(device)
            with record_function(CALL_RANGE):
                fn()
                synchronize(device)
    finally:
        prof.stop()
    events = prof.events()
    ranges = [e for e in events if e.name == CALL_RANGE and e.device_type == torch.autograd.DeviceType.CPU]
    per_call: list[tuple[float, int]] = []
    for r in ranges:
        start, end = r.time_range.start, r.time_range.end
        if device_type == "cpu":
            inside = [
                e
                for e in events
                if e.name.startswith("aten::") and e.thread == r.thread and start <= e.time_range.start <= end
            ]
            top = [e for e in inside if not (e.cpu_parent and e.cpu_parent.name.startswith("aten::"))]
            per_call.append((sum(e.self_cpu_time_total for e in inside) / 1e3, len(top)))
        else:
            work = [
                e
                for e in events
                if e.device_type != torch.autograd.DeviceType.CPU and start <= e.time_range.start <= end
            ]
            per_call.append((sum(e.time_range.elapsed_us() for e in work) / 1e3, len(work)))
    if not per_call:
        return None
    source = "cpu self time" if device_type == "cpu" else f"profiler:{activity.name.lower()}"  # type: ignore[union-attr]
    return DeviceTime(
        statistics.median(t for t, _ in per_call),
        statistics.median(k for _, k in per_call),
        len(per_call),
        source,
    )


def warm_up_profiler() -> None:
    """Start and stop the profiler once: its first start in a process takes seconds (Kineto's set-up;
    4.8 s measured on the loaded 2-core CI host), which must not count against the first case's timeout.
    Called once per worker process before its first case."""
    prof = profile(activities=[ProfilerActivity.CPU])
    prof.start()
    prof.stop()


@dataclass(frozen=True)
class GraphTime:
    median_ms: float | None
    reason: str = ""  # why there is no figure


def graph_replay_time(
    fn: Callable[[], object], device: str, reps: int, flush: Callable[[], None] | None = None
) -> GraphTime | None:
    """Per-call time of a CUDA graph replay of `fn` (median over `reps` replays, each between two
    events, after the flush when one is given); None on devices without graphs (only CUDA here)."""
    if device_type_of(device) != "cuda":
        return None
    dev = torch.device(device)
    stream = torch.cuda.Stream(dev)
    try:
        stream.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(stream):  # capture needs a side stream warmed up outside the capture
            fn()
        torch.cuda.current_stream(dev).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
    except Exception as exc:  # a host sync or dynamic shape in the call: no graph, and why
        torch.cuda.synchronize(dev)
        return GraphTime(None, f"not capturable: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
    samples = []
    for _ in range(reps):
        if flush is not None:
            flush()
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        graph.replay()
        end.record()
        torch.cuda.synchronize(dev)
        samples.append(begin.elapsed_time(end))
    del graph
    return GraphTime(statistics.median(samples))
