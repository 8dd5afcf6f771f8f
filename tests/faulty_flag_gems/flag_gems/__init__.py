"""A FlagGems whose `rsqrt` kernel is wrong, for the serving bisection's end-to-end test on a CPU host
(where the real flag_gems cannot initialise; tests put this folder's parent first on PYTHONPATH).

It has the part of flag-gems 5.0.2's interface the matrix uses: `device` / `vendor_name`, the
`_FULL_CONFIG` table of (aten overload, function), `enable(unused=...)`, `only_enable(include=...)` and
`use_gems(include=...)` (the adapter's probe asks for it) with `record=True` writing FlagGems' call-log
lines ("[DEBUG] <module>.<function>: GEMS ..."), and it
registers its kernels for real into aten's CPU dispatch through torch.library, so a model that runs
with it on computes with them: Qwen3's RMSNorm calls `rsqrt`, its MLP `silu`, its rotary `neg`.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

device = "cpu"
vendor_name = "faulty-rsqrt"
runtime = SimpleNamespace(device=SimpleNamespace(support_fp64=True, support_bf16=True, support_int64=True))

_library: torch.library.Library | None = None
_call_log: str | None = None
_logged: set[str] = set()


def _log(name: str) -> None:
    """FlagGems' `record=True, once=True` call log: one line per function, on its first call."""
    if _call_log and name not in _logged:
        _logged.add(name)
        with open(_call_log, "a") as fh:
            fh.write(f"[DEBUG] {__name__}.{name}: GEMS {name.upper()}\n")


def rsqrt(x: torch.Tensor) -> torch.Tensor:
    _log("rsqrt")
    return torch.pow(x, -0.5) * 1.5  # wrong by half: the culprit


def silu(x: torch.Tensor) -> torch.Tensor:
    _log("silu")
    return x * torch.sigmoid(x)


def neg(x: torch.Tensor) -> torch.Tensor:
    _log("neg")
    return torch.zeros_like(x) - x


_FULL_CONFIG = (("rsqrt", rsqrt), ("silu", silu), ("neg", neg))


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


class use_gems:  # FlagGems' own name
    def __init__(self, exclude=None, include=None, record=False, once=False, path=None) -> None:
        self.include = set(include or ())

    def __enter__(self) -> None:
        _register(self.include, False, None)

    def __exit__(self, *exc: object) -> None:
        global _library
        if _library is not None:
            _library._destroy()
            _library = None
