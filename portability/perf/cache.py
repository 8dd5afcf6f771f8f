"""Cold-cache timing: a buffer larger than the device's last-level cache, written between repetitions
(outside the timed region), so inputs are read from memory, not from a cache the previous repetition
filled. This is what `triton.testing.do_bench` does with its 256 MB buffer on CUDA."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import torch

from portability.devices import device_module, device_type_of

MIB = 1 << 20
ACCELERATOR_FLUSH_BYTES = 256 * MIB  # do_bench's size; more where the device reports a larger L2
CPU_FALLBACK_FLUSH_BYTES = 64 * MIB  # when sysfs does not say how large the last-level cache is
CACHE_STATES = ("cold", "warm")
CACHE_SETTINGS = ("auto", *CACHE_STATES)  # perf.cache; auto: cold for memory-bound cases, else warm


def cpu_last_level_cache_bytes(sysfs: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int | None:
    """The largest cache level of CPU 0 in bytes, from sysfs (Linux), or None."""
    sizes = []
    for index in sysfs.glob("index*"):
        try:
            text = (index / "size").read_text().strip().upper()
        except OSError:
            continue
        scale = {"K": 1 << 10, "M": MIB, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * scale)
    return max(sizes) if sizes else None


def device_last_level_cache_bytes(device: str) -> int | None:
    """The device's last-level cache in bytes where its torch module reports it (CUDA's L2_cache_size)."""
    if device_type_of(device) == "cpu":
        return cpu_last_level_cache_bytes()
    mod = device_module(device_type_of(device))
    try:
        props = mod.get_device_properties(torch.device(device))  # type: ignore[union-attr]
    except Exception:  # a device module without properties: the fixed size below applies
        return None
    size = getattr(props, "L2_cache_size", None)
    return int(size) if size else None


def flush_bytes(device: str) -> int:
    """Twice the last-level cache, at least do_bench's 256 MB on accelerators (64 MiB on a CPU whose
    cache size is unknown)."""
    llc = device_last_level_cache_bytes(device)
    if device_type_of(device) == "cpu":
        return 2 * llc if llc else CPU_FALLBACK_FLUSH_BYTES
    return max(ACCELERATOR_FLUSH_BYTES, 2 * llc if llc else 0)


@lru_cache(maxsize=4)
def _buffer(device: str) -> torch.Tensor:
    return torch.empty(flush_bytes(device) // 4, dtype=torch.int32, device=device)


def flusher(device: str) -> Callable[[], None]:
    """A callable that evicts the device's last-level cache by writing a buffer twice its size (allocated
    once per process and device)."""
    buffer = _buffer(device)

    def flush() -> None:
        buffer.zero_()

    return flush
