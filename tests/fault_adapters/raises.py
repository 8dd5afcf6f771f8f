"""A backend whose kernel raises."""

import contextlib

from portability.backends.base import BackendAdapter


class RaisingAdapter(BackendAdapter):
    name = "raises"

    @contextlib.contextmanager
    def route(self, op):
        def fail(*args, **kwargs):
            raise RuntimeError("planted kernel failure: launch returned error 700")

        yield fail
