"""Where the FlagGems under test comes from: what `nox -s matrix` installs, and what is installed.

`install_args(source)` turns the user's choice (`PORTABILITY_FLAGGEMS`, or matrix.yaml's
`backends.flaggems.options.source`) into pip arguments; `describe()` says which FlagGems is importable:
its version, and its git commit (+ whether the tree had uncommitted changes) when it came from a source
tree, a git URL or a dev build. Standard library only: noxfile.py loads this file by path, before the
project (and torch) is installed.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import json
import re
import subprocess
from pathlib import Path

DIST = "flag-gems"
DEFAULT = "flag-gems==5.0.2"  # PyPI's newest release; FlagGems' newest tags are built from source
SOURCE_FORMS = "pypi, installed, a version (5.0.2, >=5.3), a .whl path, a source tree path or git+URL"
_VERSION_SPEC = re.compile(r"(==|>=|<=|~=|!=|<|>)?\s*\d+(\.\d+)*[\w.+-]*")


def source_problem(value: object) -> str | None:
    """Why `value` is no FlagGems source (the shape only: a path may exist on the host that installs)."""
    if not isinstance(value, str) or not value.strip():
        return f"must be one of: {SOURCE_FORMS}"
    text = value.strip()
    if text in ("pypi", "installed") or text.startswith("git+") or _VERSION_SPEC.fullmatch(text):
        return None
    if "/" in text or text.startswith(".") or text.endswith(".whl"):
        return None
    return f"{text!r} is none of: {SOURCE_FORMS}"


def install_args(source: str | None, base: Path | None = None) -> list[str]:
    """pip arguments (installed with --no-deps) for FlagGems from `source`; [] for `installed` (use what
    the environment has). Relative paths are relative to `base` (the working directory). Raises
    ValueError with a one-line reason for a source that cannot be installed."""
    text = (source or "").strip()
    if not text:
        return [DEFAULT]
    path = ((base or Path.cwd()) / Path(text).expanduser()).resolve()
    problem = None if path.exists() else source_problem(text)  # `FlagGems`: a folder here
    if problem:
        raise ValueError(f"FlagGems source {problem}")
    if text == "installed":
        return []
    if text == "pypi":
        return [DIST]
    if text.startswith("git+"):
        return [text]
    if _VERSION_SPEC.fullmatch(text) and not path.exists():
        return [f"{DIST}{text}" if text[0] in "=<>~!" else f"{DIST}=={text}"]
    if text.endswith(".whl"):
        if not path.is_file():
            raise ValueError(f"FlagGems source {text}: no such wheel")
        return [str(path)]
    if not path.is_dir():
        raise ValueError(f"FlagGems source {text}: no such directory")
    if not ((path / "pyproject.toml").is_file() or (path / "setup.py").is_file()):
        raise ValueError(f"FlagGems source {text}: not a source tree (no pyproject.toml or setup.py)")
    return ["-e", str(path)]


def _git(where: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(where), *args], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def tree_commit(where: Path) -> tuple[str, bool] | None:
    """(HEAD commit, uncommitted changes to tracked files) of the git tree that tracks `where`'s
    `__init__.py`; None when no git tree tracks it (a venv inside some other repository does not)."""
    if _git(where, "ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    head = _git(where, "rev-parse", "HEAD")
    status = _git(where, "status", "--porcelain", "--untracked-files=no")
    return (head, bool(status)) if head else None


def _literal(tree: ast.Module, *names: str) -> object:
    for node in tree.body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if getattr(target, "id", None) in names:
                    try:
                        return ast.literal_eval(node.value)
                    except (ValueError, TypeError, SyntaxError):
                        return None
    return None


def _module_tree(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return None


def _distribution(root: Path) -> importlib.metadata.Distribution | None:
    """The installed distribution that provides the flag_gems package at `root`."""
    for dist in importlib.metadata.distributions(name=DIST):
        for file in dist.files or []:
            if str(file).replace("\\", "/") == "flag_gems/__init__.py":
                if Path(dist.locate_file(file)).resolve() == root / "__init__.py":
                    return dist
        url = _direct_url(dist)
        if url.get("dir_info", {}).get("editable") and root.is_relative_to(_file_path(url.get("url", ""))):
            return dist
    return None


def _direct_url(dist: importlib.metadata.Distribution) -> dict:
    try:
        return json.loads(dist.read_text("direct_url.json") or "{}")
    except (json.JSONDecodeError, OSError):
        return {}


def _file_path(url: str) -> Path:
    return Path(url.removeprefix("file://")) if url.startswith("file://") else Path("/nonexistent")


def package_version(root: Path) -> str:
    """The version the package at `root` declares (`_version.py`, `__version__`), else its metadata's."""
    for tree in (_module_tree(root / "_version.py"), _module_tree(root / "__init__.py")):
        version = _literal(tree, "__version__", "version") if tree else None
        if isinstance(version, str):
            return version
    dist = _distribution(root)
    return dist.version if dist else "unknown"


def describe(root: Path | None = None) -> dict[str, str]:
    """`flag-gems` (version) and, where known, `flag-gems.commit`, `flag-gems.dirty` (yes/no) and
    `flag-gems.from` (tree, vcs, dir, file) of the flag_gems package at `root` (the importable one);
    {} when there is none."""
    if root is None:
        spec = importlib.util.find_spec("flag_gems")
        if spec is None or not spec.submodule_search_locations:
            return {}
        root = Path(next(iter(spec.submodule_search_locations))).resolve()
    found = {DIST: package_version(root)}
    tree = tree_commit(root)
    dist = _distribution(root)
    url = _direct_url(dist) if dist else {}
    if tree is None and "dir_info" in url:
        tree = tree_commit(_file_path(url.get("url", "")) / "src" / "flag_gems") or tree_commit(
            _file_path(url.get("url", "")) / "flag_gems"
        )
    if tree is not None:
        found.update({"flag-gems.commit": tree[0], "flag-gems.dirty": "yes" if tree[1] else "no"})
        found["flag-gems.from"] = (
            "tree" if "dir_info" not in url or url["dir_info"].get("editable") else "dir"
        )
    elif "vcs_info" in url:
        found.update({"flag-gems.commit": url["vcs_info"].get("commit_id", "?"), "flag-gems.from": "vcs"})
    else:
        scm = _module_tree(root / "_version.py")
        commit = _literal(scm, "commit_id", "__commit_id__") if scm else None
        if isinstance(commit, str) and commit:
            found["flag-gems.commit"] = commit  # a dev build's setuptools-scm node
        if "archive_info" in url:
            found["flag-gems.from"] = "file"
    return found


def label(found: dict[str, str]) -> str:
    """`5.3.4`, or `5.3.4, commit 90eed79f3a1b, with uncommitted changes` for one built from a tree."""
    if DIST not in found:
        return "not installed"
    text = found[DIST]
    if "flag-gems.commit" in found:
        text += f", commit {found['flag-gems.commit'][:12]}"
        if found.get("flag-gems.dirty") == "yes":
            text += ", with uncommitted changes"
    return text
