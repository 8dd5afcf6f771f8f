"""The device's measured peaks, the roofs of the roofline: copy bandwidth and GEMM FLOP/s per dtype.

Measured once per device (a large device-to-device copy: bytes read + written per second; a large square
GEMM per floating dtype: 2·n³ per second; best of a few repetitions) and cached on disk per device name
(`$XDG_CACHE_HOME/flagos-portability/peaks-<device>.json`), so a cell starts with one file read. Sizes are
small on the CPU (the whole measurement takes a few seconds) and large on accelerators (1 GiB copy,
8192³ GEMM). The controller runs this module in a subprocess before a cell's workers start
(`python -m portability.perf.peaks --device cuda --dtypes bf16,fp16`), so it never touches the device.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from portability.devices import device_type_of, probe_device, synchronize
from portability.spec import DTYPES

PEAKS_ENV = "PORTABILITY_PEAKS"  # path of the run's peaks file, set for a cell's workers
GEMM_DTYPES = ("fp64", "fp32", "fp16", "bf16")
# (copy bytes, GEMM n) per device kind: the CPU's stay within a few seconds on a 2-core host.
SIZES = {"cpu": (64 << 20, 1024), "accelerator": (1 << 30, 8192)}
CPU_GEMM_N_LOW_PRECISION = 512  # fp16/bf16 GEMMs on a CPU without matrix units are ~20x slower
REPS = 5


def gemm_dtypes(dtypes: list[str]) -> list[str]:
    """The dtypes among `dtypes` that get a GEMM peak (floating point)."""
    return [d for d in dtypes if d in GEMM_DTYPES]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flagos-portability"


def device_key(device: str) -> str:
    """The name peaks are cached under: the device's name (on the CPU its model and torch's threads, which
    set its GEMM rate), as a file-name-safe string."""
    if device_type_of(device) == "cpu":
        model = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        name = f"cpu {model} {torch.get_num_threads()}t"
    else:
        name = f"{device_type_of(device)} {probe_device(device).name}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def _best_ms(fn: Callable[[], object], device: str, reps: int = REPS) -> float:
    fn()  # warm-up
    synchronize(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, (time.perf_counter() - t0) * 1e3)
    return best


def measure_bandwidth(device: str, nbytes: int) -> float:
    """Device-to-device copy rate in bytes/s, counting the bytes read and the bytes written."""
    src = torch.empty(nbytes // 4, dtype=torch.int32, device=device).random_(1 << 30)
    dst = torch.empty_like(src)
    ms = _best_ms(lambda: dst.copy_(src), device)
    return 2 * nbytes / (ms / 1e3)


def measure_gemm_flops(device: str, dtype: str, n: int) -> float:
    """FLOP/s of an n×n×n GEMM at `dtype` (2·n³ floating-point operations per call)."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=DTYPES[dtype])
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=DTYPES[dtype])
    ms = _best_ms(lambda: torch.mm(a, b), device)
    return 2 * n**3 / (ms / 1e3)


def measure(device: str, dtypes: list[str]) -> dict[str, Any]:
    """Peaks of `device`: {"bandwidth_Bps", "flops": {dtype: FLOP/s}, sizes, seconds taken}."""
    started = time.perf_counter()
    kind = "cpu" if device_type_of(device) == "cpu" else "accelerator"
    copy_bytes, n = SIZES[kind]
    flops: dict[str, float] = {}
    gemm_n: dict[str, int] = {}
    for dtype in (d for d in GEMM_DTYPES if d in dtypes):
        size = CPU_GEMM_N_LOW_PRECISION if kind == "cpu" and dtype in ("fp16", "bf16") else n
        flops[dtype] = measure_gemm_flops(device, dtype, size)
        gemm_n[dtype] = size
    return {
        "device": device_key(device),
        "bandwidth_Bps": measure_bandwidth(device, copy_bytes),
        "copy_bytes": copy_bytes,
        "flops": flops,
        "gemm_n": gemm_n,
        "torch": str(torch.__version__),
        "measured_s": round(time.perf_counter() - started, 2),
        "measured_at": time.time(),
    }


def load_or_measure(device: str, dtypes: list[str]) -> dict[str, Any]:
    """The cached peaks of this device, measuring (and caching) the dtypes the cache lacks."""
    path = cache_dir() / f"peaks-{device_key(device)}.json"
    cached: dict[str, Any] = {}
    if path.exists():
        try:
            cached = json.loads(path.read_text())
        except (OSError, ValueError):
            cached = {}  # a torn or foreign file is measured again
    wanted = gemm_dtypes(dtypes)
    if cached.get("bandwidth_Bps") and all(d in cached.get("flops", {}) for d in wanted):
        return {**cached, "cache": "hit", "cache_file": str(path)}
    fresh = measure(device, sorted(set(wanted) | set(cached.get("flops", {}))))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(fresh, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache costs a measurement next time, nothing else
    return {**fresh, "cache": "miss", "cache_file": str(path)}


def read_run_peaks(path: str | None = None) -> dict[str, Any]:
    """The run's peaks file ({device: peaks}) named by $PORTABILITY_PEAKS, or {}."""
    where = path or os.environ.get(PEAKS_ENV)
    if not where or not Path(where).exists():
        return {}
    try:
        return json.loads(Path(where).read_text())
    except (OSError, ValueError):
        return {}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m portability.perf.peaks", description=__doc__)
    parser.add_argument("--device", required=True)
    parser.add_argument("--dtypes", default="fp32", help="comma-separated dtypes for GEMM peaks")
    args = parser.parse_args(argv)
    peaks = load_or_measure(args.device, [d for d in args.dtypes.split(",") if d])
    sys.stdout.write(json.dumps(peaks) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
