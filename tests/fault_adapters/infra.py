"""Infrastructure failures planted inside a worker: they must be `infra`, never operator failures.

Both adapters probe fine in the planning process; they fail only inside the cell's worker processes,
which is where a lost device or a full device shows up in a real run: the runner sets PORTABILITY_CELL
there. (PYTEST_XDIST_WORKER would not do: the test suite itself runs under pytest-xdist, and the
planning process would inherit it.)
"""

import contextlib
import os

import torch
from portability.backends.base import BackendAdapter


def _in_worker() -> bool:
    return bool(os.environ.get("PORTABILITY_CELL"))


class DeviceLostAdapter(BackendAdapter):
    """The device disappears under the kernel (what the CUDA runtime says after an Xid 79)."""

    name = "devicelost"

    @contextlib.contextmanager
    def route(self, op):
        def run(*args, **kwargs):
            raise RuntimeError("CUDA error: unspecified launch failure; planted: GPU has fallen off the bus")

        yield run


class SetupOomAdapter(BackendAdapter):
    """Out of device memory while the adapter sets itself up in the worker (workspace, context)."""

    name = "setupoom"

    def __init__(self, device, options=None):
        super().__init__(device, options)
        if _in_worker():
            raise torch.OutOfMemoryError("planted: CUDA out of memory reserving a 64 GiB workspace")
