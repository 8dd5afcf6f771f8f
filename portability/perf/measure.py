"""The timing stage of one case: call time and device time of the backend and of native torch, in the
cache state the matrix asks for, `repeat` times over, and the row fields they give.

Order per adapter and repetition of the timing: the latency loop (`adapter.time`, call time, host dispatch
included) first, then a short profiled pass (`adapter.device_time`, never inside the latency loop), then,
where the device has graphs, a graph replay (`adapter.graph_time`). A cold cache flushes before every
timed or profiled call, outside what is timed.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from portability.devices import Timing, device_type_of, summarize
from portability.perf.cache import CACHE_SETTINGS, flusher
from portability.perf.peaks import read_run_peaks
from portability.perf.roofline import Work, memory_bound, roofline_pct
from portability.perf.timing import DeviceTime, GraphTime

PROFILE_CALLS = 5  # calls in the profiled pass (fewer on a CPU when five would overrun the case's budget)
__all__ = [
    "CACHE_SETTINGS",
    "CallPerf",
    "TimingSettings",
    "measure_call",
    "row_fields",
    "settings_for",
    "work_of",
]


@dataclass(frozen=True)
class TimingSettings:
    warmup: int
    repetitions: int
    budget_s: float
    cache: str  # resolved: cold | warm
    repeat: int = 1
    peaks: dict[str, Any] = field(default_factory=dict)


@dataclass
class CallPerf:
    """One adapter's timings of one case: per repeat, the latency Timing and the device time."""

    latencies: list[Timing] = field(default_factory=list)
    device: list[DeviceTime] = field(default_factory=list)
    graph: GraphTime | None = None
    seconds: float = 0.0

    @property
    def latency(self) -> Timing:
        """All repeats' samples pooled (an adapter whose `time` keeps no samples: its first Timing)."""
        pooled = [s for t in self.latencies for s in t.samples_ms]
        return summarize(pooled) if pooled else self.latencies[0]

    @property
    def device_ms(self) -> float | None:
        return statistics.median(d.median_ms for d in self.device) if self.device else None


@lru_cache(maxsize=8)
def _peaks_of(device: str) -> dict[str, Any]:
    run_peaks = read_run_peaks()
    return run_peaks.get(device) or run_peaks.get(device_type_of(device)) or {}


def work_of(spec: Any, case: Any, dtype: str, out: Any) -> Work:
    """The case's work model (bytes moved, FLOPs) from its spec, evaluated on the first call's output."""
    return Work(
        spec.bytes(case, dtype, out) if spec.bytes is not None else None,
        spec.flops(case, dtype, out) if spec.flops is not None else None,
    )


def settings_for(req: Any, work: Work) -> TimingSettings:
    """The case's timing settings, the cache state resolved (`auto`: cold when memory-bound)."""
    peaks = _peaks_of(req.device)
    cache = getattr(req, "cache", "auto")
    if cache == "auto":
        cache = "cold" if memory_bound(work, peaks, req.dtype) else "warm"
    return TimingSettings(req.warmup, req.repetitions, req.budget_s, cache, getattr(req, "repeat", 1), peaks)


def _profile_calls(device: str, seconds_per_rep: float, budget_s: float) -> int:
    """Calls in the profiled pass: on a CPU, as many as half the case's budget allows at the latency
    loop's pace (flush included), at least one."""
    if device_type_of(device) != "cpu" or budget_s <= 0 or seconds_per_rep <= 0:
        return PROFILE_CALLS
    return max(1, min(PROFILE_CALLS, int(budget_s / 2 / seconds_per_rep)))


def measure_call(adapter: Any, fn: Callable[[], object], settings: TimingSettings) -> CallPerf:
    """Both timing modes of `fn` through `adapter`, `settings.repeat` times."""
    started = time.perf_counter()
    flush = flusher(adapter.device) if settings.cache == "cold" else None
    perf = CallPerf()
    for _ in range(settings.repeat):
        loop_started = time.perf_counter()
        timing = adapter.time(fn, settings.warmup, settings.repetitions, settings.budget_s, flush)
        perf.latencies.append(timing)
        per_rep = (time.perf_counter() - loop_started) / max(1, timing.reps + settings.warmup)
        calls = _profile_calls(adapter.device, per_rep, settings.budget_s)
        device = adapter.device_time(fn, calls, flush)
        if device is not None:
            perf.device.append(device)
    perf.graph = adapter.graph_time(fn, settings.repetitions, flush)
    perf.seconds = time.perf_counter() - started
    return perf


def _cv(values: list[float]) -> float | None:
    """Coefficient of variation (sample standard deviation over mean) of per-repeat medians."""
    if len(values) < 2 or statistics.fmean(values) <= 0:
        return None
    return statistics.stdev(values) / statistics.fmean(values)


def row_fields(
    mine: CallPerf, base: CallPerf | None, work: Work, settings: TimingSettings, dtype: str
) -> dict[str, Any]:
    """The result row's performance fields (see docs/statuses.md's row reference and README)."""
    lat = mine.latency
    row: dict[str, Any] = {
        "latency_ms": lat.median_ms,
        "latency_p10_ms": lat.p10_ms,
        "latency_p90_ms": lat.p90_ms,
        "reps": lat.reps,
        "cache": settings.cache,
        "timing_s": round(mine.seconds + (base.seconds if base else 0.0), 4),
    }
    if mine.device:
        row.update(
            device_ms=mine.device_ms,
            kernels_per_call=mine.device[0].kernels_per_call,
            device_ms_source=mine.device[0].source,
        )
    if mine.graph is not None:
        row["graph_ms" if mine.graph.median_ms is not None else "graph_note"] = (
            mine.graph.median_ms if mine.graph.median_ms is not None else mine.graph.reason
        )
    if settings.repeat > 1:
        row.update(
            repeat=settings.repeat,
            latency_cv=_cv([t.median_ms for t in mine.latencies]),
            device_cv=_cv([d.median_ms for d in mine.device]),
        )
    base_lat = base.latency.median_ms if base else lat.median_ms
    base_dev = base.device_ms if base else mine.device_ms
    row["baseline_ms"] = base_lat
    if base_dev is not None:
        row["baseline_device_ms"] = base_dev
    if lat.median_ms > 0:
        row["speedup"] = base_lat / lat.median_ms
    if base_dev and mine.device_ms:
        row["device_speedup"] = base_dev / mine.device_ms
    row.update(_work_fields(work, settings, dtype, lat.median_ms, mine.device_ms))
    return row


def _work_fields(
    work: Work, settings: TimingSettings, dtype: str, latency_ms: float, device_ms: float | None
) -> dict[str, Any]:
    """Achieved rates (from the call time, as before) and roofline_pct (from the device time)."""
    fields: dict[str, Any] = {}
    if latency_ms <= 0 or not work.modelled:
        return fields
    seconds = latency_ms / 1e3
    if work.bytes is not None:
        fields.update(work_bytes=work.bytes, gbps=work.bytes / seconds / 1e9)
    if work.flops is not None:
        fields.update(work_flops=work.flops, tflops=work.flops / seconds / 1e12)
    basis, measured = ("device_ms", device_ms) if device_ms else ("latency_ms", latency_ms)
    pct = roofline_pct(work, settings.peaks, dtype, measured)
    if pct is not None:
        fields.update(roofline_pct=pct, roofline_basis=basis)
    return fields
