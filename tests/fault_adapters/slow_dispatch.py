"""A backend whose kernel is fast but whose dispatch is slow: every call sleeps on the host (as a heavy
Python wrapper would) before running torch's own kernel. Its call time (`latency_ms`) is large, its
device time (`device_ms`) is the kernel's alone."""

import contextlib
import time

from portability.backends.base import BackendAdapter

HOST_SLEEP_S = 0.005


class SlowDispatchAdapter(BackendAdapter):
    name = "slowdispatch"

    @contextlib.contextmanager
    def route(self, op):
        kernel = self.implementation(op)

        def slow_to_dispatch(*args, **kwargs):
            time.sleep(HOST_SLEEP_S)  # host time only: nothing runs on the device meanwhile
            return kernel(*args, **kwargs)

        yield slow_to_dispatch
