"""`flaggems`: FlagGems' Triton kernels, switched on per operator through FlagGems' own API.

Inside `route(op)`, only the FlagGems functions named in the spec's `flaggems=` are registered
(`flag_gems.use_gems(include=[...])`), so a case for `softmax` runs FlagGems' softmax kernel and
nothing else of FlagGems. Fused operators with no aten equivalent use the spec's `impls["flaggems"]`.
On a host where FlagGems cannot initialise (e.g. a CPU-only host: its device detection finds no
vendor) the cell is unavailable with FlagGems' own error as the reason; so is a FlagGems whose API lacks
what the adapter uses (probed on the package: portability/flaggems/features.py). Any FlagGems works:
the one importable here, whichever its release or source; `versions()` names its version, and its git
commit when it came from a source tree.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from portability.backends.base import Availability, BackendAdapter

from portability.flaggems.features import of_module
from portability.flaggems.source import describe
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


class _CallLog(logging.Handler):
    """FlagGems' call log, counted: every FlagGems function logs `GEMS <NAME>` at DEBUG on entry (what
    `use_gems(record=True)` writes to a file). Counting the records in memory tells, per case, whether a
    FlagGems function ran, without a file per case."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.calls = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.DEBUG:
            self.calls += 1


_CALL_LOG: _CallLog | None = None


def _call_log() -> _CallLog:
    global _CALL_LOG
    if _CALL_LOG is None:
        _CALL_LOG = _CallLog()
        logger = logging.getLogger("flag_gems")
        logger.addHandler(_CALL_LOG)
        logger.propagate = False  # the records are counted here, never printed into a worker's log
    return _CALL_LOG


@contextlib.contextmanager
def _debug_records() -> Iterator[None]:
    """FlagGems' DEBUG records on (they cost a log record per call: never while timing)."""
    _call_log()
    logger = logging.getLogger("flag_gems")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.setLevel(level)


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
        fg_device = getattr(fg, "device", None)
        if not isinstance(fg_device, str):
            return Availability.unavailable("flag_gems names no device it detected (no flag_gems.device)")
        if fg_device != self.device_type:
            return Availability.unavailable(
                f"flag_gems detected vendor '{getattr(fg, 'vendor_name', '?')}' on device '{fg_device}', "
                f"not '{self.device_type}'"
            )
        missing = of_module(fg).missing("per_op_context")
        return Availability.unavailable(missing) if missing else device

    def versions(self) -> dict[str, str]:
        found = super().versions()
        found.update(describe())  # the importable package's version (and commit), not another dist's
        try:
            found["flag_gems.vendor"] = self._flag_gems().vendor_name
        except Exception:
            pass
        return found

    def supported_dtypes(self) -> set[str]:
        """What FlagGems' device declares (flags it lacks: assumed supported, the cases then say)."""
        dev = getattr(getattr(self._flag_gems(), "runtime", None), "device", None)
        flags = {"fp64": "support_fp64", "bf16": "support_bf16", "int64": "support_int64"}
        return set(DTYPES) - {dtype for dtype, flag in flags.items() if getattr(dev, flag, True) is False}

    def unsupported_reason(self, op: OpSpec) -> str | None:
        if "flaggems" in op.impls:  # a fused function: an older FlagGems may not have it yet
            from portability.kernels.fused._common import absent_targets

            return absent_targets().get(op.name)
        if op.flaggems:
            return None
        return "FlagGems has no kernel for this operator"

    def implements(self, op: OpSpec) -> bool:
        return "flaggems" in op.impls or bool(op.flaggems)

    def kernel_launches(self) -> int | None:
        """FlagGems functions called inside `counting_launches` so far (its call log, see `_CallLog`)."""
        return _call_log().calls

    def counting_launches(self) -> contextlib.AbstractContextManager[None]:
        return _debug_records()

    def counts_launches_of(self, op: OpSpec) -> bool:
        """True where every FlagGems function of `op` logs its calls itself (a few do not in 5.0.2, e.g.
        tril, arange; rms_norm logs in its autograd Function, which this source check cannot see): for
        the others, and for fused `impls`, routing rests on `implements()`."""
        return "flaggems" not in op.impls and bool(op.flaggems) and all(map(self._logs_calls, op.flaggems))

    @functools.cache  # noqa: B019 - one adapter per worker process; names are few
    def _logs_calls(self, name: str) -> bool:
        fn = getattr(getattr(self._flag_gems(), "ops", None), name, None)
        try:
            return fn is not None and "logger.debug" in inspect.getsource(fn)
        except (OSError, TypeError):
            return False

    @contextlib.contextmanager
    def route(self, op: OpSpec) -> Iterator[Callable[..., Any]]:
        fg = self._flag_gems()
        if "flaggems" in op.impls:
            yield op.impls["flaggems"]
            return
        with fg.use_gems(include=list(op.flaggems)):
            yield op.fn
