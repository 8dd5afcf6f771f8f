"""A backend whose `probe()` raises (it must not): the cell cannot start, and no verdict may call the run
"all pass"."""

from portability.backends.base import BackendAdapter


class RaisingProbeAdapter(BackendAdapter):
    name = "raisingprobe"

    def probe(self):
        raise RuntimeError("planted: driver query failed")
