"""A backend that holds every call while the file named by $PORTABILITY_HOLD_FILE exists, then computes
the right result: a run that is reliably in the middle of a case when a test signals it, and that a
`--resume` (file removed) finishes at once, without timeouts or worker restarts."""

import contextlib
import os
import time
from pathlib import Path

from portability.backends.base import BackendAdapter


class HoldAdapter(BackendAdapter):
    name = "hold"

    @contextlib.contextmanager
    def route(self, op):
        hold = Path(os.environ.get("PORTABILITY_HOLD_FILE", "/nonexistent"))
        real = self.implementation(op)

        def held(*args, **kwargs):
            while hold.exists():
                time.sleep(0.05)
            return real(*args, **kwargs)

        yield held
