"""A backend that is native torch except for one input: on 135 elements its kernel never returns."""

import contextlib
import time

from portability.backends.base import BackendAdapter

HANG_SHAPE = (135,)


class HangOnOneCaseAdapter(BackendAdapter):
    name = "hang-one"

    @contextlib.contextmanager
    def route(self, op):
        def run(*args, **kwargs):
            if args and tuple(getattr(args[0], "shape", ())) == HANG_SHAPE:
                print("planted: spinning forever on 135 elements", flush=True)
                while True:
                    time.sleep(0.05)
            return op.fn(*args, **kwargs)

        yield run
