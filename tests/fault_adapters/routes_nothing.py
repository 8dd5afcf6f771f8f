"""A backend whose `route()` reaches none of its own code: it yields the spec's native torch call, and
its kernel count (`kernel_launches()`) never rises. Every case it "passes" is torch's work: `fallback`."""

import contextlib

from portability.backends.base import BackendAdapter


class RoutesNothingAdapter(BackendAdapter):
    name = "routesnothing"

    def implements(self, op):
        return True  # it claims every operator; the launch count says otherwise

    def kernel_launches(self):
        return 0  # no kernel of its own ever runs

    @contextlib.contextmanager
    def route(self, op):
        yield op.fn
