"""`flaggems`: FlagGems' Triton kernels, switched on per operator through FlagGems' own API.

Inside `route(op)`, only the FlagGems functions named in the spec's `flaggems=` are registered
(`flag_gems.use_gems(include=[...])`), so a case for `softmax` runs FlagGems' softmax kernel and
nothing else of FlagGems. Fused operators with no aten equivalent use the spec's `impls["flaggems"]`.
On a host where FlagGems cannot initialise (e.g. a CPU-only host: its device detection finds no
vendor) the cell is unavailable with FlagGems' own error as the reason.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from portability.backends.base import Availability, BackendAdapter

from portability.spec import DTYPES, OpSpec

_IMPORT_ERROR: str | None = None


def _import_flag_gems() -> Any:
    """Import flag_gems once. A failed import leaves FlagGems half-initialised (a retry raises an
    unrelated AttributeError), so the first failure is remembered and re-raised as-is."""
    global _IMPORT_ERROR
    if _IMPORT_ERROR is not None:
        raise ImportError(_IMPORT_ERROR)
    # FlagGems keeps its own tuner's choices on disk (FLAGGEMS_CACHE_DIR), but its kernels that use plain
    # triton.autotune re-benchmark in every new process unless Triton caches them too (seen on an H100:
    # 391 s of first calls in a sweep whose kernels were all compiled already). Read when FlagGems
    # builds its autotuners, at import; a user's own setting wins.
    os.environ.setdefault("TRITON_CACHE_AUTOTUNING", "1")
    try:
        return importlib.import_module("flag_gems")
    except ModuleNotFoundError as exc:
        _IMPORT_ERROR = f"flag_gems not installed ({exc})"
    except Exception as exc:  # FlagGems raises RuntimeError at import when it detects no device
        first_line = str(exc).strip().splitlines()[0].strip() if str(exc).strip() else ""
        _IMPORT_ERROR = f"flag_gems failed to initialise: {type(exc).__name__}: {first_line}"
    raise ImportError(_IMPORT_ERROR)


class FlagGemsAdapter(BackendAdapter):
    name = "flaggems"
    description = "FlagGems Triton kernels, enabled per operator"

    def _flag_gems(self) -> Any:
        return _import_flag_gems()

    def probe(self) -> Availability:
        device = super().probe()  # no device is the more basic reason: say that first
        if not device.available:
            return device
        try:
            fg = self._flag_gems()
        except ImportError as exc:
            return Availability.unavailable(str(exc))
        if fg.device != self.device_type:
            return Availability.unavailable(
                f"flag_gems detected vendor '{fg.vendor_name}' on device '{fg.device}', "
                f"not '{self.device_type}'"
            )
        return device

    def versions(self) -> dict[str, str]:
        found = super().versions()
        try:
            found["flag_gems.vendor"] = self._flag_gems().vendor_name
        except Exception:
            pass
        return found

    def supported_dtypes(self) -> set[str]:
        dev = self._flag_gems().runtime.device
        unsupported = set()
        if not dev.support_fp64:
            unsupported.add("fp64")
        if not dev.support_bf16:
            unsupported.add("bf16")
        if not dev.support_int64:
            unsupported.add("int64")
        return set(DTYPES) - unsupported

    def unsupported_reason(self, op: OpSpec) -> str | None:
        if "flaggems" in op.impls:  # a fused function: an older FlagGems may not have it yet
            from portability.kernels.fused._common import absent_targets

            return absent_targets().get(op.name)
        if op.flaggems:
            return None
        return "FlagGems has no kernel for this operator"

    @contextlib.contextmanager
    def route(self, op: OpSpec) -> Iterator[Callable[..., Any]]:
        fg = self._flag_gems()
        if "flaggems" in op.impls:
            yield op.impls["flaggems"]
            return
        with fg.use_gems(include=list(op.flaggems)):
            yield op.fn
