"""One serving cell being served (`ServingCell`) and what the cells of a run share (`RunState`).

The steps in `steps.py` take these two instead of seven to nine positional parameters: a cell knows its
engine, backend, device, tensor-parallel size and serving mode, its log, its result row, and turns a
worker mode into the spec and environment of its runs; the run state holds the figures later cells are
set against (the torch cells' tok/s and step profiles, the gate's reference logprobs per device).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portability.serving.cell_context import CellContext
from portability.serving.engines.base import ServingEngine
from portability.serving.procs import RunFailed

#: (engine + serving mode, device, tensor-parallel size): the torch cell a cell is compared with
BaselineKey = tuple[str, str, int]


@dataclass
class ServingCell:
    ctx: CellContext
    engine: ServingEngine
    backend: str
    device: str
    tensor_parallel_size: int
    #: "" or "+graphs" (vLLM with CUDA graphs: another serving mode of the same cell)
    mode: str
    row: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.engine.name}{self.mode} {self.backend}@{self.device}" + (
            f" tp{self.tensor_parallel_size}" if self.tensor_parallel_size > 1 else ""
        )

    @property
    def log(self) -> Path:
        tp = f".tp{self.tensor_parallel_size}" if self.tensor_parallel_size > 1 else ""
        return (
            self.ctx.logs
            / f"serving.{self.engine.name}.{self.backend}@{self.device.replace(':', '_')}{tp}.log"
        )

    @property
    def baseline_key(self) -> BaselineKey:
        return (f"{self.engine.name}{self.mode}", self.device, self.tensor_parallel_size)

    def spec(self, mode: str, backend: str | None = None, **over: Any) -> dict[str, Any]:
        return self.ctx.spec(
            self.engine.name,
            backend or self.backend,
            self.device,
            mode,
            tensor_parallel_size=self.tensor_parallel_size,
            **over,
        )

    def env(self, backend: str | None = None, include: list[str] | None = None) -> dict[str, Any]:
        return {
            **self.ctx.env(self.engine, backend or self.backend, include=include),
            **self.engine.placement_env(self.device, self.tensor_parallel_size),
        }


@dataclass
class RunState:
    """Figures of earlier cells of the run that later cells are set against."""

    native_tok_s: dict[BaselineKey, float] = field(default_factory=dict)
    native_profiles: dict[BaselineKey, dict[str, Any]] = field(default_factory=dict)
    references: dict[str, dict[str, Any] | RunFailed] = field(default_factory=dict)

    def keep_torch_row(self, row: dict[str, Any]) -> None:
        """A torch row from an earlier run (`--resume`): its tok/s and profile stay the baseline."""
        mode = "+graphs" if row.get("cuda_graphs") else ""
        key = (f"{row['engine']}{mode}", row["device"], row.get("tensor_parallel_size") or 1)
        if row.get("output_tok_s"):
            self.native_tok_s[key] = row["output_tok_s"]
        if row.get("profile"):
            self.native_profiles[key] = row["profile"]
