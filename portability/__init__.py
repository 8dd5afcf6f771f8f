"""FlagOS portability matrix: matrix.yaml -> cells -> cases through adapters -> results -> scorecard."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"


def _map_source_folders() -> None:
    """Running from a source tree (no install): load the top-level backends/ and kernels/ folders as
    portability.backends / portability.kernels, exactly as pyproject.toml's package-dir maps them."""
    root = Path(__file__).resolve().parent.parent
    for sub in ("backends", "kernels"):
        name = f"{__name__}.{sub}"
        if name in sys.modules or (Path(__file__).parent / sub).exists():
            continue
        init = root / sub / "__init__.py"
        if not init.exists():
            continue
        try:
            if importlib.util.find_spec(name) is not None:
                continue  # installed (wheel or editable): use that
        except (ImportError, ValueError):
            pass
        spec = importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[str(root / sub)]
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_map_source_folders()
