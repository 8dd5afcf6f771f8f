"""The real FlagGems adapter over a stand-in for an initialised flag_gems on a vendor that declares no
bf16/int64/fp64 support (FlagGems' own per-vendor flags, runtime.device.support_*): on this CPU host
flag_gems cannot initialise, so its module is replaced by this stub; the adapter's code is the real one."""

import contextlib
from types import SimpleNamespace

from portability.backends.flaggems import FlagGemsAdapter

STUB = SimpleNamespace(
    device="cpu",
    vendor_name="sunrise",
    runtime=SimpleNamespace(
        device=SimpleNamespace(support_fp64=False, support_bf16=False, support_int64=False)
    ),
    use_gems=lambda include: contextlib.nullcontext(),
)


class NoBf16FlagGemsAdapter(FlagGemsAdapter):
    name = "flaggems-nobf16"

    def _flag_gems(self):
        return STUB
