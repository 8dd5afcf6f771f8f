"""The one base class every backend adapter overrides (compare vLLM's `platforms/interface.py`).

A backend adapter answers five questions for one device of a cell `backend@device`:

1. `probe()`            can this host run me on this device? If not, say why, in words.
2. `versions()`         which software is under test (recorded in every result row).
3. `supported_dtypes()` which dtypes the backend declares it supports; others are `unsupported`.
4. `route(op)`          a context manager that makes `op` run through the backend and yields the
                        callable to time (eager torch, a torch.compile'd function, FlagGems kernels...).
   `implements(op)` / `kernel_launches()`  the proof that it did: which operators the backend declares
                        as its own, and/or a count of its own kernels that ran. A case whose call did not
                        reach the backend is `fallback`, never `pass`.
5. `synchronize()` / `time(fn)`  device-correct waiting and timing (inherited; rarely overridden).

A vendor adds a backend with one file: subclass `BackendAdapter`, set `name`, override what differs.
Everything not overridden has a working, device-generic default. The class is instantiated once per
(cell, worker process); `probe()` is called before anything else and must not raise.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from portability import devices
from portability.perf.timing import DeviceTime, GraphTime, graph_replay_time, profiled_device_time
from portability.spec import DTYPES, OpSpec


@dataclass(frozen=True)
class Availability:
    available: bool
    reason: str = ""
    device_name: str = ""

    @classmethod
    def ok(cls, device_name: str = "") -> Availability:
        return cls(True, "", device_name)

    @classmethod
    def unavailable(cls, reason: str) -> Availability:
        return cls(False, reason)


def package_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class BackendAdapter:
    """Base class of all backend adapters. Override only what your backend does differently."""

    #: the adapter's name as written in matrix.yaml (`adapter: torch`)
    name: ClassVar[str] = ""
    #: one line for `portability list` and the docs
    description: ClassVar[str] = ""
    #: whether speedups of this backend are measured against eager torch on the same device
    is_baseline: ClassVar[bool] = False
    #: whether every case compiles (torch.compile: ~0.8 s a case on a 2-core CPU); the `quick` profile
    #: then runs only the Qwen3-path operators on this backend (portability/plan/profile.py)
    compiles_each_case: ClassVar[bool] = False

    def __init__(self, device: str, options: dict[str, Any] | None = None) -> None:
        self.device = device
        self.device_type = devices.device_type_of(device)
        self.options = dict(options or {})

    # 1. availability --------------------------------------------------------------------------------
    def probe(self) -> Availability:
        """Available, or unavailable with a human reason. Must not raise. Default: the device exists."""
        status = devices.probe_device(self.device)
        if not status.available:
            return Availability.unavailable(status.reason)
        return Availability.ok(status.name)

    # 2. versions ------------------------------------------------------------------------------------
    def versions(self) -> dict[str, str]:
        found = {"torch": str(torch.__version__)}
        for dist in ("triton", "flag-gems", "pytorch-triton-rocm"):
            v = package_version(dist)
            if v:
                found[dist] = v
        return found

    # 3. capabilities --------------------------------------------------------------------------------
    def supported_dtypes(self) -> set[str]:
        """Dtype names (see spec.DTYPES) this backend declares it supports on this device."""
        return set(DTYPES)

    # 4. routing -------------------------------------------------------------------------------------
    def implementation(self, op: OpSpec) -> Callable[..., Any]:
        """The callable that implements `op` for this backend: the spec's per-backend impl, or `op.fn`."""
        return op.impls.get(self.name, op.fn)

    @contextlib.contextmanager
    def route(self, op: OpSpec) -> Iterator[Callable[..., Any]]:
        """Context in which calling the yielded callable runs `op` through this backend."""
        yield self.implementation(op)

    def implements(self, op: OpSpec) -> bool | None:
        """Whether this backend has its own code for `op`: True (its kernel runs inside `route`), False
        (`route` leaves it to native torch: every case of `op` is scored `fallback`, never `pass`), or
        None (cannot say). Default: True for the baseline (native torch is its own code) and for a spec
        with an `impls[<name>]` of this backend, else None. Override it with your operator list."""
        if self.is_baseline or self.name in op.impls:
            return True
        return None

    def kernel_launches(self) -> int | None:
        """How many of this backend's own kernels (or functions) have run in this process, or None if it
        cannot tell. Read before and after each checked call: no increase means the call never reached
        the backend, and the case is `fallback`. The conformance kit checks that `route` reaches it."""
        return None

    def counts_launches_of(self, op: OpSpec) -> bool:
        """Whether `kernel_launches()` sees `op`'s kernels (default True). False: for this op the count
        proves nothing, and routing rests on `implements()` alone."""
        return True

    @contextlib.contextmanager
    def counting_launches(self) -> Iterator[None]:
        """Open around the checked call only, never while timing: an adapter whose count has a cost
        (FlagGems' call log) counts inside it only. Default: the count is always on."""
        yield

    def unsupported_reason(self, op: OpSpec) -> str | None:
        """A reason this backend cannot run `op` at all (e.g. no kernel for it), or None."""
        return None

    # 5. device work ---------------------------------------------------------------------------------
    def synchronize(self) -> None:
        devices.synchronize(self.device)

    def time(
        self,
        fn: Callable[[], object],
        warmup: int,
        reps: int,
        budget_s: float = 0.0,
        flush: Callable[[], None] | None = None,
    ) -> devices.Timing:
        """Call time of `fn` (`latency_ms`: host dispatch included); `flush` runs before each repetition,
        outside the timed region (cold cache)."""
        return devices.time_fn(fn, self.device, warmup, reps, budget_s, flush)

    def device_time(
        self, fn: Callable[[], object], calls: int, flush: Callable[[], None] | None = None
    ) -> DeviceTime | None:
        """Device execution time of one call of `fn` (`device_ms`) and its kernel count, from the
        profiler's device activity (the CPU: the aten operators' self time); None if it cannot tell."""
        return profiled_device_time(fn, self.device, calls, flush)

    def graph_time(
        self, fn: Callable[[], object], reps: int, flush: Callable[[], None] | None = None
    ) -> GraphTime | None:
        """Per-call time of a captured device graph's replay (`graph_ms`); None where there are no graphs."""
        return graph_replay_time(fn, self.device, reps, flush)

    def device_name(self) -> str:
        return devices.probe_device(self.device).name
