"""The plan: matrix config -> cells (backend × device, each probed) -> case requests.

A cell is `backend@device`. Probing imports the adapter and asks it whether this host can run it; a cell
that cannot run is kept in the plan as `unavailable` with the adapter's reason (or `error` if the
adapter itself fails to import), so a scorecard always shows the whole declared matrix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from portability import devices
from portability.catalog import load_catalog
from portability.matrix.config import MatrixConfig
from portability.plan import profile as profiles
from portability.plan.case_id import CaseId
from portability.registry import adapter_class
from portability.results.rundir import RunDir, RunFileError
from portability.run.case import CaseRequest
from portability.spec import OpSpec


@dataclass
class Cell:
    backend: str
    adapter: str
    device: str
    dtypes: list[str]
    options: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    status: str = "pending"  # available | unavailable | error
    reason: str = ""
    device_name: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    device_count: int = 1

    @property
    def id(self) -> str:
        return f"{self.backend}@{self.device}"


@dataclass
class Plan:
    cells: list[Cell]
    cases: list[CaseRequest]
    timeout_s: float
    workers: int | str
    refused: list[tuple[CaseRequest, str]] = field(default_factory=list)  # never run, with the reason
    profile: str = "full"  # quick | full (plan/profile.py)

    def cases_of(self, cell: Cell) -> list[CaseRequest]:
        return [c for c in self.cases if c.cell == cell.id]

    def fingerprint(self) -> str:
        """What identifies the plan: its case ids, those refused at plan time included (free memory may
        differ between a run and its resume; the cases do not). Rows carry it as `plan`."""
        ids = sorted({c.id for c in self.cases} | {req.id for req, _ in self.refused})
        return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]

    def write(self, path: Path) -> None:
        path.write_text(
            json.dumps(
                {
                    "fingerprint": self.fingerprint(),
                    "cells": [asdict(c) for c in self.cells],
                    "cases": [asdict(c) for c in self.cases],
                    "timeout_s": self.timeout_s,
                    "workers": self.workers,
                },
                indent=1,
            )
        )

    @classmethod
    def read(cls, path: Path) -> Plan:
        """The plan in a plan file; RunFileError (one line, no traceback) when it is not one."""
        data = RunDir(Path(path).parent).read_json(Path(path))
        try:
            return cls(
                [Cell(**c) for c in data["cells"]],
                [CaseRequest(**c) for c in data["cases"]],
                data["timeout_s"],
                data["workers"],
            )
        except (KeyError, TypeError) as exc:
            why = f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
            expected = "expected what `portability run` writes"
            raise RunFileError(f"{path}: not a plan ({why}), {expected}") from None


@dataclass(frozen=True)
class Filters:
    backends: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()


def select_operators(config: MatrixConfig, filters: Filters) -> list[OpSpec]:
    catalog = load_catalog()
    sel = config.operators
    names = list(catalog) if sel.include == "all" else list(sel.include)
    tags = set(filters.tags or sel.tags)
    if tags:
        names = [n for n in names if tags & set(catalog[n].tags)]
    if filters.ops:
        names = [n for n in filters.ops]
    names = [n for n in names if n not in sel.exclude or n in filters.ops]
    return [catalog[n] for n in names]


def probe_cell(cell: Cell) -> Cell:
    """Fill in the cell's availability. Never raises."""
    saved = {k: os.environ.get(k) for k in cell.env}
    os.environ.update(cell.env)
    try:
        adapter = adapter_class(cell.adapter)(cell.device, cell.options)
        found = adapter.probe()
        if found.available:
            cell.status, cell.device_name = "available", found.device_name
            cell.versions = adapter.versions()
            cell.device_count = max(1, devices.probe_device(cell.device).count)
        else:
            cell.status, cell.reason = "unavailable", found.reason
            with contextlib.suppress(Exception):  # which version was unavailable is worth saying too
                cell.versions = adapter.versions()
    except Exception as exc:  # an adapter that cannot even import is an error of that cell, not of ops
        cell.status, cell.reason = "error", f"adapter failed to load: {type(exc).__name__}: {exc}"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return cell


# A case needs its inputs, its output(s) and the reference copy on the device at once: refuse it at plan
# time when three times its input bytes exceed the device's free memory, rather than run it into an OOM.
MEMORY_FACTOR = 3


def memory_refusal(case_bytes: int, free_bytes: int | None) -> str | None:
    """Why a case cannot fit in device memory (with the figures), or None."""
    if free_bytes is None or case_bytes * MEMORY_FACTOR <= free_bytes:
        return None
    return (
        f"needs about {case_bytes * MEMORY_FACTOR / 2**30:.2f} GiB ({MEMORY_FACTOR}x its "
        f"{case_bytes / 2**30:.2f} GiB of inputs) but the device has {free_bytes / 2**30:.2f} GiB free"
    )


def operators_chosen(config: MatrixConfig, filters: Filters) -> bool:
    """Whether the matrix or the command line narrowed the operators (then `auto` means `full`)."""
    sel = config.operators
    return bool(filters.ops or filters.tags or sel.include != "all" or sel.tags)


def _compiles_each_case(cell: Cell) -> bool:
    try:
        return bool(getattr(adapter_class(cell.adapter), "compiles_each_case", False))
    except Exception:  # the probe already recorded why the adapter cannot load
        return False


def build_plan(config: MatrixConfig, filters: Filters, probe: bool = True, profile: str = "full") -> Plan:
    """The cells (probed unless `probe` is False) and their cases under `profile` (plan/profile.py)."""
    cells: list[Cell] = []
    for b in config.backends.values():
        if filters.backends and b.name not in filters.backends:
            continue
        for dev in b.devices:
            if (
                filters.devices
                and dev not in filters.devices
                and devices.device_type_of(dev) not in filters.devices
            ):
                continue
            dtypes = [d for d in b.dtypes if not filters.dtypes or d in filters.dtypes]
            cells.append(Cell(b.name, b.adapter, dev, dtypes, dict(b.options), dict(b.env)))
    if probe:
        cells = [probe_cell(c) for c in cells]
    ops = select_operators(config, filters)
    chosen = operators_chosen(config, filters)
    profile = profiles.resolve_profile(profile, cells, chosen)
    perf = config.perf
    cases: list[CaseRequest] = []
    refused: list[tuple[CaseRequest, str]] = []
    for cell in cells:
        if cell.status != "available":
            continue
        dtype_kind = devices.device_type_of(cell.device)
        try:
            free = devices.memory_stats(cell.device).get("free")
        except Exception:  # a device that cannot report memory is not refused anything
            free = None
        cell_ops = profiles.operators_for_cell(ops, _compiles_each_case(cell), profile, chosen)
        for spec in cell_ops:
            for case in profiles.cases_of(spec, profile):
                for dtype in profiles.dtypes_of(spec, cell.dtypes, profile):
                    tol = config.tolerance(
                        spec.name,
                        case.name,
                        cell.backend,
                        dtype_kind,
                        dtype,
                        spec_case=(case.atol, case.rtol),
                        spec_op=(spec.atol.get(dtype), spec.rtol.get(dtype)),
                    )
                    request = CaseRequest(
                        id=str(CaseId(cell.id, spec.name, case.name, dtype)),
                        cell=cell.id,
                        backend=cell.backend,
                        device=cell.device,
                        op=spec.name,
                        case=case.name,
                        dtype=dtype,
                        atol=tol.atol,
                        rtol=tol.rtol,
                        warmup=perf.warmup,
                        repetitions=perf.repetitions,
                        budget_s=perf.budget_s,
                        input_bytes=case.input_bytes(dtype),
                        cache=perf.cache,
                        repeat=perf.repeat,
                    )
                    why = memory_refusal(request.input_bytes, free)
                    if why:
                        refused.append((request, why))
                    else:
                        cases.append(request)
    return Plan(cells, cases, perf.timeout_s, perf.workers, refused, profile)
