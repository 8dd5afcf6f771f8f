"""What the installed FlagGems registers: its `_FULL_CONFIG` table read from the package's source (any
host), or its live registry where FlagGems initialises (a host with one of its devices).

The live registry runs `flag_gems.enable()` in a fresh interpreter with a registrar that records each
registration instead of making it, so the vendor's own exclusions and conditions apply. Which registrar
class to extend is read from `enable()`'s own default (`Register` in 5.0.2, `GeneralOpRegistrar` in
5.3.x), and the registrations are read back through `all_registered_keys()` where FlagGems has it
(5.3.x), else through `current_work_registrar`: probes on the package, never its version number.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from portability.flaggems.package import FlagGemsUnavailable, package_dir, parse


@dataclass(frozen=True)
class Registration:
    key: str  # the aten overload, FlagGems' spelling: "add.Tensor", "mm" (= mm.default)
    function: str  # the FlagGems function's __name__: what only_enable(include=) / enable(unused=) match
    conditional: bool  # registered only where a condition holds (e.g. a minimum torch version)


def _import_aliases(tree: ast.Module) -> dict[str, str]:
    """`from flag_gems.ops import range as range_op` -> {"range_op": "range"}: the table names the
    alias, FlagGems matches the function's own __name__."""
    return {
        alias.asname: alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname
    }


def registrations(root: Path | None = None) -> list[Registration]:
    """Every entry of the `_FULL_CONFIG` table of the flag_gems package at `root` (the importable one
    by default), in table order, read from its `__init__.py` without importing it."""
    init = (root or package_dir()) / "__init__.py"
    tree = parse(init)
    aliases = _import_aliases(tree)
    table = next(
        (
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Assign)
            and any(getattr(target, "id", None) == "_FULL_CONFIG" for target in node.targets)
        ),
        None,
    )
    if not isinstance(table, (ast.Tuple, ast.List)):
        raise FlagGemsUnavailable(f"{init} has no literal _FULL_CONFIG table to read")
    found: list[Registration] = []
    for entry in table.elts:
        if not isinstance(entry, (ast.Tuple, ast.List)) or len(entry.elts) < 2:
            continue
        key, fn = entry.elts[0], entry.elts[1]
        if isinstance(key, ast.Constant) and isinstance(key.value, str) and isinstance(fn, ast.Name):
            found.append(Registration(key.value, aliases.get(fn.id, fn.id), len(entry.elts) > 2))
    return found


def registered_overloads(root: Path | None = None) -> list[str]:
    """The aten overloads ("add.Tensor", "mm") the installed FlagGems registers, sorted, from its table.
    Raises FlagGemsUnavailable when flag_gems is not installed or has no readable table."""
    return sorted({r.key for r in registrations(root)})


# Run in a fresh interpreter: importing flag_gems initialises the device and FlagGems' global registrar,
# which neither the process that orchestrates a run nor the CPU-side dispatch of coverage should carry.
_LIVE_REGISTRY = r"""
import inspect, json, sys
import flag_gems

enable = getattr(flag_gems, "enable", None)
params = inspect.signature(enable).parameters if callable(enable) else {}
base = params["registrar"].default if "registrar" in params else None
if not isinstance(base, type):
    print(json.dumps({"unavailable": "flag_gems.enable() takes no registrar class to record with"}))
    sys.exit(0)

class Recorder(base):  # the vendor's filtering, nothing registered
    def register_impl(self, key, fn, *extra_dispatch_keys):
        self.all_keys.append(key)
        self.all_ops.append(getattr(fn, "__name__", str(fn)))

flag_gems.enable(registrar=Recorder)
if callable(getattr(flag_gems, "all_registered_keys", None)):
    keys, api = flag_gems.all_registered_keys(), "all_registered_keys()"
else:
    keys, api = flag_gems.current_work_registrar.get_all_keys(), "current_work_registrar"
ops = flag_gems.current_work_registrar.get_all_ops()
reg = flag_gems.current_work_registrar
vendor = getattr(flag_gems, "vendor_name", "") or getattr(reg, "get_vendor_name", lambda: "unknown")()
print(json.dumps({"pairs": list(zip(keys, ops)), "vendor": vendor, "api": api}), flush=True)
"""


@dataclass
class Registry:
    pairs: list[tuple[str, str]]  # (aten overload key, FlagGems function name)
    source: str  # "live" or "package"
    note: str  # the vendor of a live registry, or why the package's table was read instead


def read_registry(timeout_s: float = 300.0) -> Registry:
    """FlagGems' live registry on this host if it initialises here, else the installed package's table.
    Raises FlagGemsUnavailable when flag_gems is not installed at all."""
    table = [(r.key, r.function) for r in registrations()]
    cmd = [sys.executable, "-c", _LIVE_REGISTRY]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return Registry(table, "package", f"flag_gems did not initialise within {timeout_s:g}s")
    if proc.returncode != 0:
        why = _exception_text(proc.stderr) or f"exit status {proc.returncode}"
        return Registry(table, "package", f"flag_gems cannot initialise on this host ({why})")
    live = json.loads(proc.stdout.strip().splitlines()[-1])
    if "unavailable" in live:
        return Registry(table, "package", f"no live registry: {live['unavailable']}")
    names = dict(table)  # the function names as the table spells them (and the specs' flaggems=)
    pairs = [(key, names.get(key, fn)) for key, fn in live["pairs"]]
    return Registry(pairs, "live", f"vendor {live['vendor']}, read through {live['api']}")


def _exception_text(stderr: str) -> str:
    """The last exception of a traceback, its message lines joined (FlagGems' span several)."""
    lines = stderr.splitlines()
    starts = [i for i, line in enumerate(lines) if re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b", line)]
    tail = lines[starts[-1] :] if starts else lines[-1:]
    return " ".join(" ".join(tail).split())[:300]
