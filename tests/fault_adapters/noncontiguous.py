"""A backend that is right on contiguous inputs and wrong (off by one) when any input is a strided view."""

import contextlib

import torch
from portability.backends.base import BackendAdapter


class NonContiguousBugAdapter(BackendAdapter):
    name = "noncontiguous"

    @contextlib.contextmanager
    def route(self, op):
        def run(*args, **kwargs):
            strided = any(isinstance(a, torch.Tensor) and not a.is_contiguous() for a in args)
            out = op.fn(*args, **kwargs)
            return out + 1 if strided else out

        yield run
