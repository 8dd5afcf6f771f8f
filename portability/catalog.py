"""The operator catalog: every `SPECS` list of every module in `portability.kernels` (kernels/), plus
the modules named in `$PORTABILITY_SPECS` (test-only or out-of-tree operators; see `extra_spec_modules`)."""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

from portability.spec import OpSpec

# Extra spec modules, separated by os.pathsep: "path/to/file.py" or "package.module", each with a SPECS
# list. An environment variable rather than a matrix key because every process of a run needs the same
# catalog (the CLI validating the matrix, the pytest sessions and their xdist workers) and all of them
# inherit the environment. tests/ uses it for small planted operators that do not depend on kernels/.
SPECS_ENV = "PORTABILITY_SPECS"


def extra_spec_modules() -> list[str]:
    return [m for m in os.environ.get(SPECS_ENV, "").split(os.pathsep) if m.strip()]


def _import_extra(name: str) -> ModuleType:
    from portability.matrix.config import ConfigError

    try:
        if name.endswith(".py"):
            path = Path(name).resolve()
            spec = importlib.util.spec_from_file_location(f"portability_specs_{path.stem}", path)
            if spec is None or spec.loader is None or not path.is_file():
                raise FileNotFoundError(f"no such file {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(name)
    except Exception as exc:  # shown as one line by the CLI, never a traceback
        raise ConfigError(
            f"${SPECS_ENV}",
            1,
            f"cannot load {name!r} ({type(exc).__name__}: {exc})".replace("\n", " ")
            + ", expected a Python file or module with a SPECS list",
        ) from None


@cache
def load_catalog() -> dict[str, OpSpec]:
    """All operator specs by name. Duplicate names are a bug in the catalog and raise."""
    import portability.kernels as pkg

    modules: list[tuple[str, ModuleType]] = []
    # kernels/ groups its families in sub-packages (qwen3/, aten/, fused/); `_`-prefixed modules are helpers
    for info in sorted(pkgutil.walk_packages(pkg.__path__, f"{pkg.__name__}."), key=lambda i: i.name):
        leaf = info.name.rsplit(".", 1)[-1]
        if info.ispkg or leaf.startswith("_"):
            continue
        where = "kernels/" + info.name.removeprefix(f"{pkg.__name__}.").replace(".", "/") + ".py"
        modules.append((where, importlib.import_module(info.name)))
    modules += [(name, _import_extra(name)) for name in extra_spec_modules()]
    specs: dict[str, OpSpec] = {}
    for where, module in modules:
        for spec in getattr(module, "SPECS", []):
            if spec.name in specs:
                raise ValueError(f"operator {spec.name!r} is declared twice (second in {where})")
            specs[spec.name] = spec
    return specs


def all_tags() -> set[str]:
    return {t for s in load_catalog().values() for t in s.tags}
