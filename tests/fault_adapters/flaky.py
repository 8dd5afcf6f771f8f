"""A backend that errors the first time each operator is called in any process and is right afterwards
(state in the `state_dir` option): a re-run in a fresh worker passes, so the case is `flaky`."""

import contextlib
from pathlib import Path

from portability.backends.base import BackendAdapter


class FlakyAdapter(BackendAdapter):
    name = "flaky"

    def implements(self, op):
        return True

    @contextlib.contextmanager
    def route(self, op):
        marker = Path(self.options["state_dir"]) / f"{op.name}.seen"

        def first_call_fails(*args, **kwargs):
            if not marker.exists():
                marker.write_text("called once")
                raise RuntimeError("planted: first launch fails (a race in the kernel's workspace)")
            return op.fn(*args, **kwargs)

        yield first_call_fails
