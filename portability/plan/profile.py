"""Profiles: how much of the catalog a run plays. `full` is every case of every selected operator at
every dtype of the cell; `quick` is what fits a newcomer's first run on a CPU-only host (minutes, not
hours) and still gives every cell a real verdict on every operator:

- one representative case per operator: the smallest case with at least `REPRESENTATIVE_MIN_BYTES` of
  input (skipping the one-element and empty edge cases, so Qwen3-path operators run a decode or a
  scaled-down shape), or the largest case when all are smaller;
- one dtype: fp32 where the cell and the operator have it (else the first they share);
- on a backend that compiles every case (an adapter with `compiles_each_case`, e.g. inductor: about
  0.8 s of compile per case on a 2-core CPU), only the Qwen3-path operators (tag `qwen3`), unless the
  command line chose the operators (--ops/--tags).

`auto` (the default) is `quick` for a plain run of the whole catalog on a host where no accelerator cell
is available, and `full` otherwise: on an accelerator host, or when the matrix or the command line
selects operators (`operators.include`/`tags`, --ops, --tags), whose every case is then wanted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from portability import devices
from portability.spec import Case, OpSpec

if TYPE_CHECKING:
    from portability.plan.cells import Cell

PROFILES = ("auto", "quick", "full")
REPRESENTATIVE_MIN_BYTES = 4096
QUICK_DTYPE = "fp32"
QUICK_COMPILED_TAG = "qwen3"


def resolve_profile(requested: str, cells: Sequence[Cell], operators_chosen: bool) -> str:
    """`quick` or `full` for a requested profile (`auto` decided from the probed cells)."""
    if requested != "auto":
        return requested
    accelerated = any(c.status == "available" and devices.device_type_of(c.device) != "cpu" for c in cells)
    return "full" if accelerated or operators_chosen else "quick"


def representative_case(spec: OpSpec) -> Case:
    """The one case `quick` runs of `spec` (see the module docstring)."""
    dtype = QUICK_DTYPE if QUICK_DTYPE in spec.dtypes else spec.dtypes[0]
    by_size = sorted(spec.cases, key=lambda c: c.input_bytes(dtype))  # stable: catalog order on ties
    sized = [c for c in by_size if c.input_bytes(dtype) >= REPRESENTATIVE_MIN_BYTES]
    return sized[0] if sized else by_size[-1]


def cases_of(spec: OpSpec, profile: str) -> Sequence[Case]:
    return spec.cases if profile == "full" else [representative_case(spec)]


def dtypes_of(spec: OpSpec, cell_dtypes: Sequence[str], profile: str) -> list[str]:
    """The dtypes `spec` runs at in a cell with `cell_dtypes` (already narrowed by --dtypes)."""
    shared = [d for d in cell_dtypes if d in spec.dtypes]
    if profile == "full" or len(shared) <= 1:
        return shared
    return [QUICK_DTYPE] if QUICK_DTYPE in shared else shared[:1]


def operators_for_cell(
    specs: Sequence[OpSpec], compiles_each_case: bool, profile: str, operators_chosen: bool
) -> list[OpSpec]:
    """The operators a cell runs: on a backend that compiles every case, `quick` keeps the Qwen3 path."""
    if profile == "full" or not compiles_each_case or operators_chosen:
        return list(specs)
    return [s for s in specs if QUICK_COMPILED_TAG in s.tags]
