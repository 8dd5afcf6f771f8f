"""Qwen3-4B dimensions and helpers shared by the kernels files (a leading underscore: not a spec file)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

HIDDEN = 2560
INTERMEDIATE = 9728
Q_HEADS = 32
KV_HEADS = 8
HEAD_DIM = 128
VOCAB = 151936
RMS_EPS = 1e-6
# tokens in a step: 1×1 decode, 8×1 batched decode, 1×512 prefill
DECODE1, DECODE8, PREFILL = 1, 8, 512


def flag_gems_fn(name: str) -> Callable[..., Any]:
    """A FlagGems function resolved at call time (flag_gems cannot even be imported on hosts without a
    supported device, so specs must not import it at module load)."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module("flag_gems"), name)(*args, **kwargs)

    call.__name__ = f"flag_gems.{name}"
    return call
