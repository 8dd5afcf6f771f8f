"""`torch`: eager PyTorch on the device, the native baseline every speedup is measured against."""

from __future__ import annotations

from portability.backends.base import BackendAdapter


class TorchAdapter(BackendAdapter):
    name = "torch"
    description = "eager PyTorch on the device (the native baseline)"
    is_baseline = True
