"""A backend that overrides the CPU kernels of the ops the harness itself uses, through torch.library,
while its `route()` is open: `aten::add.Tensor` (its own kernel, correct), `aten::abs` (its own kernel,
wrong: it returns -x) and `aten::copy_` (raises). The harness copies, upcasts and compares with exactly
these ops: if any of that ran under the route, its `add` cases would error instead of passing. Only the
call under test and its timing may run inside the route."""

import contextlib

import torch
from portability.backends.base import BackendAdapter

OWN = ("v_add", "v_abs")


class HarnessOpsAdapter(BackendAdapter):
    name = "harnessops"
    _launches = 0

    def implements(self, op):
        return op.name in OWN

    def kernel_launches(self):
        return HarnessOpsAdapter._launches

    @contextlib.contextmanager
    def route(self, op):
        lib = torch.library.Library("aten", "IMPL")

        def own_add(x, y, *, alpha=1):
            HarnessOpsAdapter._launches += 1
            return torch.sub(x, torch.neg(y) * alpha if alpha != 1 else torch.neg(y))

        def wrong_abs(x):
            HarnessOpsAdapter._launches += 1
            return torch.neg(x)

        def poisoned_copy(dst, src, non_blocking=False):
            raise RuntimeError("harnessops: copy_ ran under route(): the harness computed under the backend")

        lib.impl("add.Tensor", own_add, "CPU")
        lib.impl("abs", wrong_abs, "CPU")
        lib.impl("copy_", poisoned_copy, "CPU")
        try:
            yield op.fn
        finally:
            lib._destroy()
