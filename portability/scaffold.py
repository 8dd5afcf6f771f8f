"""`portability new-adapter NAME`: a ready-to-install package skeleton for a vendor's backend adapter."""

from __future__ import annotations

import re
from pathlib import Path

PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "portability-{name}"
version = "0.1.0"
description = "{title} backend adapter for the FlagOS portability matrix"
requires-python = ">=3.10"
dependencies = ["flagos-portability"]

[project.entry-points."portability.backends"]
{name} = "portability_{module}:{cls}"

[tool.setuptools.packages.find]
where = ["src"]
"""

ADAPTER = '''\
"""{cls}: the {title} backend for the FlagOS portability matrix.

Every method below has a working default in BackendAdapter; the ones written out are those a vendor
normally changes. Run `portability conformance --backend {name} --device DEVICE` after each change.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from portability.backends.base import Availability, BackendAdapter
from portability.spec import OpSpec


class {cls}(BackendAdapter):
    name = "{name}"
    description = "{title} kernels"

    def probe(self) -> Availability:
        """Available, or unavailable with a reason a person can act on. Must not raise.
        Typically: import your runtime, then let the base class check the device exists."""
        return super().probe()

    def versions(self) -> dict[str, str]:
        """Software under test, recorded in every result row: add your runtime's version."""
        return super().versions()

    def supported_dtypes(self) -> set[str]:
        """Dtypes you support (fp64, fp32, fp16, bf16, int64, ...); others are reported `unsupported`."""
        return {{"fp32", "fp16", "bf16"}}

    def unsupported_reason(self, op: OpSpec) -> str | None:
        """Why an operator cannot run at all on this backend (no kernel), or None."""
        return None

    def implements(self, op: OpSpec) -> bool | None:
        """Whether `op` runs your own kernel inside `route` (e.g. `op.name in MY_KERNELS`). False: every
        case of `op` is `fallback` (ran native torch, not {name}), never `pass`. None: cannot say."""
        return False  # nothing is routed yet: every case is honestly `fallback` until you route it

    def kernel_launches(self) -> int | None:
        """How many of your kernels ran so far in this process (a counter your kernels bump, or your
        runtime's own count). Read around every checked call: no increase means the case is `fallback`.
        The conformance kit fails until it can verify routing this way."""
        return None

    @contextlib.contextmanager
    def route(self, op: OpSpec) -> Iterator[Callable[..., Any]]:
        """Make `op` run through your kernels while the context is open, and yield the callable to time.
        Until you route anything this runs eager PyTorch, and `implements` says so."""
        yield op.fn
'''

TEST = """\
import subprocess
import sys


def test_adapter_keeps_the_contract():
    # Fails until route() reaches your kernels for one of add/silu/softmax/rms_norm, implements() says so
    # and kernel_launches() counts them: the kit never passes an adapter it could not check.
    cmd = [sys.executable, "-m", "portability", "conformance", "--backend", "{name}"]
    assert subprocess.run(cmd, check=False).returncode == 0
"""

README = """\
# portability-{name}

The {title} backend adapter for the FlagOS portability matrix.

```bash
pip install -e .                                   # registers the adapter under the name `{name}`
portability conformance --backend {name} --device cpu   # the contract checks
portability run --matrix matrix.yaml --out out/{name}    # a scorecard row for {name}
```
"""

MATRIX = """\
version: 1
backends:
  torch: {{adapter: torch, devices: [cpu], dtypes: [fp32]}}
  {name}: {{adapter: {name}, devices: [cpu], dtypes: [fp32, fp16, bf16]}}
operators: {{tags: [smoke]}}
"""


def new_adapter(name: str, out: Path) -> Path:
    """Write portability-NAME/ under `out` and return its path."""
    if not re.fullmatch(r"[a-z][a-z0-9_-]*", name):
        raise ValueError(f"adapter name {name!r}: expected lowercase letters, digits, '-' or '_'")
    module = name.replace("-", "_")
    cls = "".join(part.capitalize() for part in re.split(r"[-_]", name)) + "Adapter"
    fields = {"name": name, "module": module, "cls": cls, "title": name.replace("-", " ").title()}
    root = out / f"portability-{name}"
    if root.exists():
        raise FileExistsError(f"{root} already exists")
    files = {
        "pyproject.toml": PYPROJECT,
        f"src/portability_{module}/__init__.py": ADAPTER,
        "tests/test_conformance.py": TEST,
        "README.md": README,
        "matrix.yaml": MATRIX,
    }
    for rel, template in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.format(**fields))
    return root
