"""GPU faults planted as real Triton kernels (for the GPU evidence run; unavailable without a GPU).

- `OutOfBoundsAdapter`: a kernel that stores far past the end of its output: an illegal memory access,
  which poisons the whole process's CUDA context.
- `HangingKernelAdapter`: a kernel that spins on a flag nobody sets; only killing the process ends it.

Run: `tools/gpu-run.sh /tmp/gpu-faults --matrix tests/fault_adapters/gpu_faults.yaml`
"""

from __future__ import annotations

import contextlib
import functools

import torch
from portability.backends.base import BackendAdapter


@functools.cache
def _kernels():
    import triton
    import triton.language as tl

    @triton.jit
    def oob_store(out_ptr, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        # 2**34 elements past the end: far outside any allocation
        tl.store(out_ptr + offs + (1 << 34), tl.zeros([BLOCK], dtype=tl.float32), mask=offs < n)

    @triton.jit
    def spin(flag_ptr):
        while tl.load(flag_ptr, volatile=True) == 0:
            pass

    return oob_store, spin


class OutOfBoundsAdapter(BackendAdapter):
    name = "triton-oob"

    @contextlib.contextmanager
    def route(self, op):
        oob_store, _ = _kernels()

        def run(*args, **kwargs):
            out = op.fn(*args, **kwargs)
            scratch = torch.empty(1024, device=self.device, dtype=torch.float32)
            oob_store[(4,)](scratch, scratch.numel(), BLOCK=256)
            torch.accelerator.synchronize()
            return out

        yield run


class HangingKernelAdapter(BackendAdapter):
    name = "triton-hang"

    @contextlib.contextmanager
    def route(self, op):
        _, spin = _kernels()

        def run(*args, **kwargs):
            flag = torch.zeros(1, device=self.device, dtype=torch.int32)
            print("planted: launching a kernel that never returns", flush=True)
            spin[(1,)](flag)
            torch.accelerator.synchronize()
            return op.fn(*args, **kwargs)

        yield run
