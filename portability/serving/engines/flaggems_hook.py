"""Switch FlagGems on inside an engine's own processes.

vLLM runs the model in an EngineCore subprocess (and possibly more workers), so enabling FlagGems in
the process that creates the engine is not enough. vLLM loads "general plugins" (entry-point group
`vllm.general_plugins`) in every one of its processes, before the model runs; `plugin_path()` writes a
tiny distribution (a `.dist-info` with one entry point, no code) whose directory goes on PYTHONPATH of
the run, and vLLM then calls `vllm_general_plugin()` below in each process. Only runs that ask for
FlagGems (`PORTABILITY_FLAGGEMS=1`) get the directory and `VLLM_PLUGINS` naming the plugin.

`PORTABILITY_FLAGGEMS_INCLUDE=fn1,fn2` limits FlagGems to those functions (`flag_gems.only_enable`),
which is how the bisection switches subsets on. Each process that enabled FlagGems writes a line to
`PORTABILITY_FLAGGEMS_MARKER` (a file), so a run can prove FlagGems was on where the model ran.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

PLUGIN_NAME = "portability_flaggems"
DIST = "portability_serving_flaggems_hook-0.0.0"
_done = False


def enable_from_env() -> list[str] | None:
    """Enable FlagGems as the environment asks; returns the enabled op names (None if not asked)."""
    global _done
    if os.environ.get("PORTABILITY_FLAGGEMS") != "1" or _done:
        return None
    os.environ.setdefault("TRITON_CACHE_AUTOTUNING", "1")  # as backends/flaggems.py: tuning survives restarts
    import flag_gems

    include = os.environ.get("PORTABILITY_FLAGGEMS_INCLUDE")
    if include is not None:
        ops = [op for op in include.split(",") if op]
        flag_gems.only_enable(include=ops)
    else:
        flag_gems.enable()
        ops = ["*"]
    _done = True
    marker = os.environ.get("PORTABILITY_FLAGGEMS_MARKER")
    if marker:
        line = json.dumps(
            {"pid": os.getpid(), "ops": len(ops), "vendor": getattr(flag_gems, "vendor_name", "")}
        )
        with open(marker, "a") as fh:
            fh.write(line + "\n")
    return ops


def vllm_general_plugin() -> None:
    enable_from_env()


def all_ops(dispatched: list[str] | None = None) -> list[str]:
    """FlagGems function names (what `only_enable(include=...)` matches; not aten keys such as
    `add.Tensor`, which it silently ignores): every one, or those registered for any overload of the
    aten operators named in `dispatched` (the bisection's universe)."""
    import flag_gems

    wanted = set(dispatched) if dispatched is not None else None
    names = [
        getattr(entry[1], "__name__", str(entry[1]))
        for entry in flag_gems._FULL_CONFIG
        if wanted is None or entry[0].split(".")[0] in wanted
    ]
    return list(dict.fromkeys(names))


def plugin_path(cache: Path) -> Path:
    """The directory holding the hook's `.dist-info` (written once)."""
    root = cache / "vllm-general-plugin"
    info = root / f"{DIST}.dist-info"
    if not (info / "entry_points.txt").exists():
        info.mkdir(parents=True, exist_ok=True)
        (info / "METADATA").write_text(
            "Metadata-Version: 2.1\nName: portability-serving-flaggems-hook\nVersion: 0.0.0\n"
        )
        (info / "entry_points.txt").write_text(
            f"[vllm.general_plugins]\n{PLUGIN_NAME} = {__name__}:vllm_general_plugin\n"
        )
    return root
