"""The real FlagGems adapter over a stand-in for an initialised flag_gems on a vendor that declares no
bf16/int64/fp64 support (FlagGems' own per-vendor flags, runtime.device.support_*): on this CPU host
flag_gems cannot initialise, so its module is replaced by this stub; the adapter's code is the real one."""

import contextlib
import logging
from types import SimpleNamespace

import torch
from portability.backends.flaggems import FlagGemsAdapter

logger = logging.getLogger("flag_gems.ops.add")


def add(x, y, *, alpha=1):
    """The stub's `add`: logs on entry at DEBUG as FlagGems' functions do (the adapter reads that)."""
    logger.debug("GEMS ADD")
    return torch.sub(x, torch.neg(y) * alpha)


@contextlib.contextmanager
def _use_gems(include):
    """Like flag_gems.use_gems for `add`: its kernel registered over aten's CPU one while open."""
    lib = torch.library.Library("aten", "IMPL")
    if "add" in include:
        lib.impl("add.Tensor", add, "CPU")
    try:
        yield
    finally:
        lib._destroy()


STUB = SimpleNamespace(
    device="cpu",
    vendor_name="sunrise",
    runtime=SimpleNamespace(
        device=SimpleNamespace(support_fp64=False, support_bf16=False, support_int64=False)
    ),
    use_gems=_use_gems,
    ops=SimpleNamespace(add=add),
)


class NoBf16FlagGemsAdapter(FlagGemsAdapter):
    name = "flaggems-nobf16"

    def _flag_gems(self):
        return STUB
