"""The operator catalog: every `SPECS` list of every module in `portability.kernels` (kernels/)."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from portability.spec import OpSpec


@cache
def load_catalog() -> dict[str, OpSpec]:
    """All operator specs by name. Duplicate names are a bug in the catalog and raise."""
    import portability.kernels as pkg

    specs: dict[str, OpSpec] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{pkg.__name__}.{info.name}")
        for spec in getattr(module, "SPECS", []):
            if spec.name in specs:
                raise ValueError(
                    f"operator {spec.name!r} is declared twice (second in kernels/{info.name}.py)"
                )
            specs[spec.name] = spec
    return specs


def all_tags() -> set[str]:
    return {t for s in load_catalog().values() for t in s.tags}
