"""A backend whose kernel never returns (a spin that ignores everything but a kill)."""

import contextlib
import time

from portability.backends.base import BackendAdapter


class HangAdapter(BackendAdapter):
    name = "hang"

    @contextlib.contextmanager
    def route(self, op):
        def spin(*args, **kwargs):
            print("planted: spinning forever", flush=True)
            while True:
                time.sleep(0.05)

        yield spin
