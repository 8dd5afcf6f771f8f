"""`inductor`: torch.compile of the same op, a second, independent code generator.

Triton kernels on GPUs, C++/OpenMP on the CPU. Compilation happens on the first call, which the runner
times separately as compile time and keeps out of the latency figures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from portability.backends.base import Availability, BackendAdapter

from portability.spec import OpSpec


class InductorAdapter(BackendAdapter):
    name = "inductor"
    description = "torch.compile (Inductor) of the same op"
    compiles_each_case = True

    def probe(self) -> Availability:
        found = super().probe()
        if not found.available:
            return found
        try:
            import torch._inductor  # noqa: F401
        except Exception as exc:
            return Availability.unavailable(f"torch._inductor failed to import: {exc}")
        return found

    def implements(self, op: OpSpec) -> bool:
        """Every operator: the compiled function is Inductor's own code by construction."""
        return True

    @contextlib.contextmanager
    def route(self, op: OpSpec) -> Iterator[Callable[..., Any]]:
        # dynamic=False: one specialised kernel per case shape, as a serving engine would compile it.
        mode = self.options.get("mode")
        torch._dynamo.reset()
        yield torch.compile(self.implementation(op), dynamic=False, mode=mode)
