"""A FlagGems whose `mm` is right but slow (it sleeps `DELAY_MS` per call, 10 ms unless the environment's
SLOW_FLAG_GEMS_DELAY_MS says otherwise), for the serving throughput gate and its time attribution on a CPU
host, where the real flag_gems cannot initialise: tests put this folder's parent first on PYTHONPATH.

Like tests/faulty_flag_gems it has the part of flag-gems 5.0.2's interface the matrix uses (`device`,
`vendor_name`, `_FULL_CONFIG`, `enable(unused=...)`, `only_enable(include=...)`, the `record=True` call
log, `use_gems(include=...)`) and registers its kernels into aten's CPU dispatch through torch.library,
so Qwen3 served with it computes with them: every linear layer runs `mm`, the MLP `silu`. Sleeping keeps
the box's cores free.
"""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

import torch

device = "cpu"
vendor_name = "slow-mm"
runtime = SimpleNamespace(device=SimpleNamespace(support_fp64=True, support_bf16=True, support_int64=True))
DELAY_MS = float(os.environ.get("SLOW_FLAG_GEMS_DELAY_MS", "10"))

_library: torch.library.Library | None = None
_call_log: str | None = None
_logged: set[str] = set()


def _log(name: str) -> None:
    """FlagGems' `record=True, once=True` call log: one line per function, on its first call."""
    if _call_log and name not in _logged:
        _logged.add(name)
        with open(_call_log, "a") as fh:
            fh.write(f"[DEBUG] {__name__}.{name}: GEMS {name.upper()}\n")


def mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    _log("mm")
    time.sleep(DELAY_MS / 1e3)  # the slow part: the result stays exact
    # the product through another aten kernel (aten::mm would call this function again)
    return torch.addmm(a.new_zeros(()), a, b, beta=0)


def silu(x: torch.Tensor) -> torch.Tensor:
    _log("silu")
    return x * torch.sigmoid(x)


_FULL_CONFIG = (("mm", mm), ("silu", silu))


def _register(names: set[str], record: bool, path: str | None) -> None:
    global _library, _call_log
    _library = torch.library.Library("aten", "IMPL")
    for key, fn in _FULL_CONFIG:
        if fn.__name__ in names:
            _library.impl(key, fn, "CPU")
    _call_log = path if record else None


def enable(lib=None, unused=None, registrar=None, record=False, once=False, path=None) -> None:
    _register({fn.__name__ for _, fn in _FULL_CONFIG} - set(unused or ()), record, path)


def only_enable(lib=None, include=None, registrar=None, record=False, once=False, path=None) -> None:
    _register(set(include or ()), record, path)


class use_gems:  # FlagGems' own name: the flaggems adapter's probe asks for it
    def __init__(self, exclude=None, include=None, record=False, once=False, path=None) -> None:
        self.include = set(include or ())

    def __enter__(self) -> None:
        _register(self.include, False, None)

    def __exit__(self, *exc: object) -> None:
        global _library
        if _library is not None:
            _library._destroy()
            _library = None
