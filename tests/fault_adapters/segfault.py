"""A backend whose kernel dereferences a null pointer: the worker process dies with SIGSEGV."""

import contextlib
import ctypes

from portability.backends.base import BackendAdapter


class SegfaultAdapter(BackendAdapter):
    name = "segfault"

    @contextlib.contextmanager
    def route(self, op):
        def crash(*args, **kwargs):
            print("planted: about to read address 0", flush=True)
            return ctypes.string_at(0)

        yield crash
