"""A backend that writes only the first half of its output buffer and leaves the rest as allocated."""

import contextlib

import torch
from portability.backends.base import BackendAdapter


class UnwrittenOutputAdapter(BackendAdapter):
    name = "unwritten"

    @contextlib.contextmanager
    def route(self, op):
        def run(*args, **kwargs):
            full = op.fn(*[a.clone() if isinstance(a, torch.Tensor) else a for a in args], **kwargs)
            out = torch.empty_like(full)  # fresh allocation: whatever the allocator hands out
            n = full.numel() // 2
            out.view(-1)[:n] = full.reshape(-1)[:n]
            return out

        yield run
