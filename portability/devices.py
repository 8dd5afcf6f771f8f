"""Device-generic access to any PyTorch device type a FlagGems vendor uses.

Nothing here names `torch.cuda` directly: the device's torch module is `getattr(torch, device_type)`
once the vendor's extension (torch_npu, torch_mlu, torch_musa, ...) has been imported, and
synchronisation / events go through `torch.accelerator` and the generic `torch.Event` where available.
"""

from __future__ import annotations

import importlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import torch

# The out-of-tree PyTorch extension each vendor device type needs (None: built into torch).
VENDOR_EXTENSIONS: dict[str, str | None] = {
    "cpu": None,
    "cuda": None,  # NVIDIA, and the CUDA-compatible stacks: Hygon DCU, Iluvatar, MetaX, Kunlunxin
    "xpu": None,
    "npu": "torch_npu",  # Huawei Ascend
    "mlu": "torch_mlu",  # Cambricon
    "musa": "torch_musa",  # Moore Threads
    "gcu": "torch_gcu",  # Enflame
    "txda": "torch_txda",  # Tsingmicro
    "hip": None,  # AMD through ROCm's HIP device type
    "mps": None,  # Apple
}
# The one list of device types matrix.yaml accepts: adding a device type is one line above.
DEVICE_TYPES: tuple[str, ...] = tuple(VENDOR_EXTENSIONS)


@dataclass(frozen=True)
class DeviceStatus:
    available: bool
    reason: str = ""
    name: str = ""
    count: int = 0


def device_type_of(device: str) -> str:
    return device.split(":", 1)[0]


def device_module(device_type: str) -> ModuleType | None:
    """The torch submodule for a device type (torch.cuda, torch.npu, ...), importing its extension."""
    ext = VENDOR_EXTENSIONS.get(device_type)
    if ext:
        importlib.import_module(ext)
    return getattr(torch, device_type, None)


def probe_device(device: str) -> DeviceStatus:
    """Whether this host can run work on `device`, and if not, a human reason."""
    dtype = device_type_of(device)
    if dtype == "cpu":
        import platform

        return DeviceStatus(True, name=platform.processor() or platform.machine() or "cpu", count=1)
    ext = VENDOR_EXTENSIONS.get(dtype)
    try:
        mod = device_module(dtype)
    except ImportError as exc:
        return DeviceStatus(False, f"{ext} not installed ({exc.__class__.__name__}: {exc})")
    if mod is None or not hasattr(mod, "is_available"):
        return DeviceStatus(False, f"this torch {torch.__version__} has no '{dtype}' device module")
    try:
        if not mod.is_available():
            return DeviceStatus(
                False, f"torch.{dtype}.is_available() is False on this host (no {dtype} device)"
            )
        count = mod.device_count()
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        if index >= count:
            return DeviceStatus(False, f"{device} requested but only {count} {dtype} device(s) present")
        name = mod.get_device_name(index) if hasattr(mod, "get_device_name") else dtype
    except Exception as exc:  # a broken driver must read as a reason, not a traceback
        return DeviceStatus(False, f"{dtype} runtime failed: {exc.__class__.__name__}: {exc}")
    return DeviceStatus(True, name=name, count=count)


def synchronize(device: str) -> None:
    dtype = device_type_of(device)
    if dtype == "cpu":
        return
    acc = getattr(torch, "accelerator", None)
    if acc is not None and acc.is_available() and acc.current_accelerator().type == dtype:
        acc.synchronize(torch.device(device))
        return
    mod = device_module(dtype)
    mod.synchronize()


def memory_stats(device: str) -> dict[str, int]:
    """Free/total device memory in bytes where the device reports it."""
    dtype = device_type_of(device)
    if dtype == "cpu":
        # MemAvailable, not free pages: the page cache is reclaimable and can hold most of the RAM.
        info = {}
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                info[key] = int(value.split()[0]) * 1024
        return {"free": info.get("MemAvailable", info.get("MemFree", 0)), "total": info.get("MemTotal", 0)}
    mod = device_module(dtype)
    if mod is not None and hasattr(mod, "mem_get_info"):
        free, total = mod.mem_get_info(torch.device(device))
        return {"free": int(free), "total": int(total)}
    return {}


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p10_ms: float
    p90_ms: float
    reps: int
    samples_ms: tuple[float, ...] = ()


def _quantile(sorted_values: list[float], q: float) -> float:
    idx = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[idx]


def summarize(samples_ms: list[float]) -> Timing:
    s = sorted(samples_ms)
    return Timing(statistics.median(s), _quantile(s, 0.1), _quantile(s, 0.9), len(s), tuple(samples_ms))


def time_fn(
    fn: Callable[[], object],
    device: str,
    warmup: int,
    reps: int,
    budget_s: float = 0.0,
    flush: Callable[[], None] | None = None,
) -> Timing:
    """Median/p10/p90 call time (`latency_ms`) of `fn` on `device`, warm-up excluded: the time one call
    takes as an eager caller sees it, the host's dispatch (Python included) as well as the device's work.

    GPUs and other accelerators: one pair of device events around each repetition (torch.Event is the
    device-generic event type); warm (no `flush`), the calls are issued back to back as today, so a
    µs-scale call measures how fast the host issues it. With `flush` (cold cache), each repetition first
    writes the flush buffer and waits for the device, outside the events: the pair then spans one call
    from an idle device, dispatch included. CPU: time.perf_counter, a monotonic clock; there `budget_s`
    bounds the time spent on one case (warm-up and repetitions stop once it is spent, after at least one
    timed repetition), because a bf16 GEMM on a CPU can take a minute per call. We write this loop rather
    than call triton.testing.do_bench because do_bench is CUDA-event based through Triton's active driver
    and does not cover CPU or vendor devices whose Triton driver differs from their torch device module;
    it also measures device time only, which is `portability.perf.timing`'s other mode.
    """
    dtype = device_type_of(device)
    start_wall = time.perf_counter()

    def spent() -> bool:
        return dtype == "cpu" and budget_s > 0 and time.perf_counter() - start_wall > budget_s

    for _ in range(warmup):
        if spent():
            break
        fn()
    synchronize(device)
    samples: list[float] = []
    if dtype == "cpu":
        start_wall = time.perf_counter()
        for _ in range(reps):
            if flush is not None:
                flush()
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
            if spent():
                break
    else:
        events = [
            (torch.Event(device=dtype, enable_timing=True), torch.Event(device=dtype, enable_timing=True))
            for _ in range(reps)
        ]
        for begin, end in events:
            if flush is not None:
                flush()
                synchronize(device)
            begin.record()
            fn()
            end.record()
        synchronize(device)
        samples = [b.elapsed_time(e) for b, e in events]
    return summarize(samples)
