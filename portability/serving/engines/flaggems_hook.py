"""Switch FlagGems on inside an engine's own processes.

vLLM runs the model in an EngineCore subprocess (and possibly more workers), so enabling FlagGems in
the process that creates the engine is not enough. vLLM loads "general plugins" (entry-point group
`vllm.general_plugins`) in every one of its processes, before the model runs; `plugin_path()` writes a
tiny distribution (a `.dist-info` with one entry point, no code) whose directory goes on PYTHONPATH of
the run, and vLLM then calls `vllm_general_plugin()` below in each process. Only runs that ask for
FlagGems (`PORTABILITY_FLAGGEMS_ON=1`) get the directory and `VLLM_PLUGINS` naming the plugin.

`PORTABILITY_FLAGGEMS_INCLUDE=fn1,fn2` limits FlagGems to those functions (`flag_gems.only_enable`),
which is how the bisection switches subsets on; `PORTABILITY_FLAGGEMS_EXCLUDE=fn1,fn2` switches on all
but those (`flag_gems.enable(unused=...)`, matrix.yaml's `serving.flaggems_exclude`). Each process that
enabled FlagGems writes a line to `PORTABILITY_FLAGGEMS_MARKER` (a file), so a run can prove FlagGems
was on where the model ran.

What this FlagGems' API offers is probed on the package (portability/flaggems/features.py), never read
off its version: a FlagGems without `only_enable(include=)` fails the bisection's runs with
`flag_gems <version> has no only_enable(...)`, one without a call log is served unrecorded.

`PORTABILITY_FLAGGEMS_RECORD=DIR` turns on FlagGems' own call log (`enable(record=True, once=True)`:
one line per logging call site, `[DEBUG] <module>.<function>: GEMS ...`), one file per process in DIR;
`called_functions(DIR)` reads back which FlagGems functions ran. A failed gate run recorded this way
hands the bisection the functions that really ran in the engine, where vLLM cannot say which aten
operators its model dispatches to.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

PLUGIN_NAME = "portability_flaggems"
DIST = "portability_serving_flaggems_hook-0.0.0"
_done = False
_enabled: set[str] | None = None  # FlagGems function names switched on here; None: all but excluded
_excluded: set[str] = set()


def enable_from_env() -> list[str] | None:
    """Enable FlagGems as the environment asks; returns the enabled op names (None if not asked)."""
    global _done, _enabled, _excluded
    if os.environ.get("PORTABILITY_FLAGGEMS_ON") != "1" or _done:
        return None
    os.environ.setdefault("TRITON_CACHE_AUTOTUNING", "1")  # as backends/flaggems.py: tuning survives restarts
    import flag_gems

    from portability.flaggems.features import of_module

    features = of_module(flag_gems)  # what this FlagGems' API has, whichever its release
    record_dir = os.environ.get("PORTABILITY_FLAGGEMS_RECORD")
    record: dict = {}
    if record_dir and features.has("call_log"):  # without one, the bisection searches what is dispatched
        Path(record_dir).mkdir(parents=True, exist_ok=True)
        record = {"record": True, "once": True, "path": str(Path(record_dir) / f"calls.{os.getpid()}.log")}
    include = os.environ.get("PORTABILITY_FLAGGEMS_INCLUDE")
    unused = [op for op in os.environ.get("PORTABILITY_FLAGGEMS_EXCLUDE", "").split(",") if op]
    if include is not None:
        features.require("only_enable")  # raises FlagGemsUnavailable: "flag_gems X has no only_enable(...)"
        ops = [op for op in include.split(",") if op]
        flag_gems.only_enable(include=ops, **record)
        _enabled = set(ops)
    else:
        if unused:
            features.require("enable_unused")
        flag_gems.enable(unused=unused or None, **record)  # None: FlagGems' own default
        ops = ["*"]
        _excluded = set(unused)
    _done = True
    marker = os.environ.get("PORTABILITY_FLAGGEMS_MARKER")
    if marker:
        line = json.dumps(
            {
                "pid": os.getpid(),
                "ops": len(ops),
                "excluded": unused if include is None else [],
                "vendor": getattr(flag_gems, "vendor_name", ""),
                "version": str(getattr(flag_gems, "__version__", "")),
            }
        )
        with open(marker, "a") as fh:
            fh.write(line + "\n")
    return ops


def vllm_general_plugin() -> None:
    enable_from_env()


# FlagGems' log format is "[%(levelname)s] %(name)s.%(funcName)s: %(message)s" (flag_gems/logging_utils.py),
# its loggers are named after their modules: the line names the module and the function that logged
_CALL_LINE = re.compile(r"^\[[A-Z]+\] (flag_gems[\w.]*\.\w+): ", re.MULTILINE)


def called_functions(record_dir: Path) -> list[str]:
    """`module.function` of what wrote to FlagGems' call logs in `record_dir`, first seen first (empty
    when nothing was recorded). Helpers log too (Hopper's `mm` logs in `general_mm`), and some FlagGems
    functions never log: `switchable_among` maps them, and callers check that the set reproduces what
    they look for."""
    names: dict[str, None] = {}
    for log in sorted(Path(record_dir).glob("calls.*.log")):
        for match in _CALL_LINE.finditer(log.read_text(errors="replace")):
            names.setdefault(match.group(1))
    return list(names)


def switchable_among(called: list[str], registered: list[tuple[str, str]]) -> list[str]:
    """The FlagGems function names (`only_enable` matches these) behind `called` (`module.function`):
    the function itself where FlagGems registers it, else every function registered from the module
    the helper lives in. `registered` is (module, name) per registered function."""
    by_module: dict[str, list[str]] = {}
    for module, name in registered:
        by_module.setdefault(module, []).append(name)
    found: dict[str, None] = {}
    for qualified in called:
        module, _, function = qualified.rpartition(".")
        names = by_module.get(module, [])
        for name in [function] if function in names else names:
            found.setdefault(name)
    return list(found)


def all_ops(dispatched: list[str] | None = None, called: list[str] | None = None) -> list[str]:
    """FlagGems function names (what `only_enable(include=...)` matches; not aten keys such as
    `add.Tensor`, which it silently ignores): every one, or those registered for any overload of the
    aten operators named in `dispatched`, or those behind the `called` functions of a call log (the
    bisection's universe)."""
    import flag_gems

    from portability.flaggems.package import FlagGemsUnavailable

    table = getattr(flag_gems, "_FULL_CONFIG", None)
    if not isinstance(table, (tuple, list)):
        raise FlagGemsUnavailable("flag_gems has no _FULL_CONFIG table of its registrations")
    if called is not None:
        registered = [(getattr(e[1], "__module__", ""), getattr(e[1], "__name__", "")) for e in table]
        return switchable_among(called, registered)
    wanted = set(dispatched) if dispatched is not None else None
    names = [
        getattr(entry[1], "__name__", str(entry[1]))
        for entry in table  # (key, function[, condition[, dispatch keys]]): 5.3 adds the optional tail
        if wanted is None or entry[0].split(".")[0] in wanted
    ]
    return list(dict.fromkeys(names))


def enabled_by_aten() -> dict[str, list[str]]:
    """{aten operator: `module.function` of each FlagGems function switched on for it in this process}
    (operator names as torch.profiler shows them without `aten::`: FlagGems' `mm.out` counts for `mm`)."""
    import flag_gems

    found: dict[str, list[str]] = {}
    for entry in flag_gems._FULL_CONFIG:
        fn = entry[1]
        name = getattr(fn, "__name__", "")
        if name in _excluded or (_enabled is not None and name not in _enabled):
            continue
        qualified = f"{getattr(fn, '__module__', '')}.{name}"
        names = found.setdefault(entry[0].split(".")[0], [])
        if qualified not in names:
            names.append(qualified)
    return found


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
