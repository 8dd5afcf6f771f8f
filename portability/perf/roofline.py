"""Roofline: how close a case comes to the bound its work allows on this device.

A case with a work model (bytes moved and/or floating-point operations, from its spec) cannot run faster
than max(bytes / bandwidth, flops / peak FLOP/s of its dtype): equivalently its attainable rate is
min(peak FLOP/s, arithmetic intensity × bandwidth). `roofline_pct` is that bound time over the measured
time, in percent (100 % = at the roof). A case whose model needs a peak that was not measured (a FLOP
model at a dtype without a GEMM peak, e.g. integer) gets none rather than a flattering partial bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Work:
    bytes: int | None
    flops: int | None

    @property
    def modelled(self) -> bool:
        return bool(self.bytes) or bool(self.flops)


def bound_ms(work: Work, peaks: dict[str, Any], dtype: str) -> float | None:
    """The least time `work` can take on a device with these peaks, or None when a needed peak is missing."""
    if not work.modelled or not peaks:
        return None
    times = []
    if work.bytes:
        bandwidth = peaks.get("bandwidth_Bps")
        if not bandwidth:
            return None
        times.append(work.bytes / bandwidth)
    if work.flops:
        rate = (peaks.get("flops") or {}).get(dtype)
        if not rate:
            return None
        times.append(work.flops / rate)
    return max(times) * 1e3


def roofline_pct(work: Work, peaks: dict[str, Any], dtype: str, measured_ms: float | None) -> float | None:
    bound = bound_ms(work, peaks, dtype)
    if bound is None or not measured_ms or measured_ms <= 0:
        return None
    return 100.0 * bound / measured_ms


def memory_bound(work: Work, peaks: dict[str, Any], dtype: str) -> bool:
    """Whether the bandwidth roof is the one that applies: no FLOP model, or an arithmetic intensity
    below the device's balance point (peak FLOP/s over bandwidth). Without peaks, any FLOP model counts
    as compute-bound."""
    if not work.flops:
        return True
    rate = (peaks.get("flops") or {}).get(dtype)
    bandwidth = peaks.get("bandwidth_Bps")
    if not work.bytes or not rate or not bandwidth:
        return False
    return work.flops / work.bytes < rate / bandwidth
