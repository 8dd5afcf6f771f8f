"""Where adapter classes come from: the built-ins in backends/ and third-party packages that register
an entry point in the group `portability.backends` (`mychip = "portability_mychip:MyChipAdapter"`)."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
from functools import cache
from pathlib import Path

from portability.backends.base import BackendAdapter

BUILTIN_ADAPTERS: dict[str, str] = {
    "torch": "portability.backends.torch_eager:TorchAdapter",
    "inductor": "portability.backends.inductor:InductorAdapter",
    "flaggems": "portability.backends.flaggems:FlagGemsAdapter",
}
ENTRY_POINT_GROUP = "portability.backends"


@cache
def baseline_name() -> str:
    """The backend every speedup is measured against: the built-in adapter with `is_baseline` set."""
    return next(name for name in BUILTIN_ADAPTERS if adapter_class(name).is_baseline)


@cache
def adapter_targets() -> dict[str, str]:
    """Adapter name -> "module:Class". Entry points may add names, never replace a built-in."""
    found = dict(BUILTIN_ADAPTERS)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def is_adapter_reference(name: str) -> bool:
    """A registered name, or an explicit "package.module:Class" / "path/to/file.py:Class"."""
    return name in adapter_targets() or (":" in name and all(name.partition(":")[::2]))


def adapter_class(name: str) -> type[BackendAdapter]:
    """Import an adapter class. Import errors propagate: callers turn them into an `error` cell."""
    target = adapter_targets().get(name, name)
    module_name, _, attr = target.rpartition(":")
    if module_name.endswith(".py"):
        path = Path(module_name).resolve()
        spec = importlib.util.spec_from_file_location(f"portability_adapter_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load adapter file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    cls = getattr(module, attr)
    if not (isinstance(cls, type) and issubclass(cls, BackendAdapter)):
        raise TypeError(f"{target} is not a BackendAdapter subclass")
    return cls
