"""Which catalog operators a FlagGems pull request touches, from the files it changes.

FlagGems keeps one operator per module: `src/flag_gems/ops/<op>.py` (also `fused/`, `experimental_ops/` and
the per-vendor `runtime/backend/_<vendor>/ops/`). A changed module selects the catalog specs that route to
a function it defines (their `flaggems=` names; the module is parsed with `ast`, never imported, at the
pull request's head and at its base, so a deleted function counts too) or that carry the module's name. A
changed registration in `src/flag_gems/__init__.py` (`_FULL_CONFIG`) selects the specs of the functions
whose registrations differ. Any other change under `src/flag_gems/` (runtime, utils) can affect every
operator: the selection is then "all", naming the file that forced it. Changes outside the package
(tests, docs, benchmarks) select nothing.
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from portability.spec import OpSpec

PACKAGE = "src/flag_gems/"
REGISTRY_FILE = PACKAGE + "__init__.py"
_OPERATOR_DIRS = r"^src/flag_gems/(?:runtime/backend/_[^/]+/)?(?:ops|fused|experimental_ops)/"
OPERATOR_MODULE = re.compile(_OPERATOR_DIRS + r"(?P<module>[A-Za-z_]\w*)\.py$")
IMPORT_LIST = re.compile(_OPERATOR_DIRS + r"__init__\.py$")  # re-exports: selected through their modules


@dataclass
class Selection:
    """The operators to run; `ops` None means all of them (`reason` names the file that forced it)."""

    ops: list[str] | None
    reason: str
    unexercised: dict[str, str] = field(default_factory=dict)  # changed module no spec exercises -> path

    def ops_argument(self) -> str:
        """The value for the workflow's operator list: "all", "none" or `portability run --ops`'s list."""
        if self.ops is None:
            return "all"
        return ",".join(self.ops) or "none"


def _parse(source: str) -> ast.Module:
    try:
        return ast.parse(source)
    except SyntaxError:  # a file that does not parse defines and registers nothing we can name
        return ast.Module(body=[], type_ignores=[])


def defined_functions(source: str) -> set[str]:
    """Names of the functions a module defines at top level."""
    return {n.name for n in _parse(source).body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}


def registrations(source: str) -> set[tuple[str, str]]:
    """(aten overload key, function name) pairs of `_FULL_CONFIG` in FlagGems' `__init__.py`."""
    pairs: set[tuple[str, str]] = set()
    for node in ast.walk(_parse(source)):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "_FULL_CONFIG":
            for entry in getattr(node.value, "elts", []):
                key, fn = [*getattr(entry, "elts", []), None, None][:2]
                if isinstance(key, ast.Constant) and isinstance(fn, ast.Name):
                    pairs.add((str(key.value), fn.id))
    return pairs


def select_operators(
    changed: Iterable[str],
    head_text: Mapping[str, str],
    base_text: Mapping[str, str],
    catalog: Callable[[], Mapping[str, OpSpec]],
) -> Selection:
    """The catalog operators the `changed` paths (repository-relative) touch. `head_text` / `base_text`
    give a path's content at the pull request's head / base (absent: no such file there); `catalog` is
    only loaded when some operator module or registration changed."""
    functions: dict[str, set[str]] = {}  # module (or the registry) -> the functions it names
    paths: dict[str, str] = {}
    for path in sorted(set(changed)):
        if not path.startswith(PACKAGE) or not path.endswith(".py") or IMPORT_LIST.match(path):
            continue
        if path == REGISTRY_FILE:
            differ = registrations(base_text.get(path, "")) ^ registrations(head_text.get(path, ""))
            functions[""] = {fn for _, fn in differ}
            continue
        match = OPERATOR_MODULE.match(path)
        if not match:
            return Selection(None, f"{path} is shared code outside one operator's module: all operators")
        module = match["module"]
        paths[module] = path
        functions[module] = (
            functions.get(module, set())
            | defined_functions(head_text.get(path, ""))
            | defined_functions(base_text.get(path, ""))
        )
    if not any(functions.values()) and not paths:
        return Selection([], "no FlagGems operator module, registration or shared code changed")
    specs = catalog()
    selected: set[str] = set()
    unexercised: dict[str, str] = {}
    for module, names in functions.items():
        hits = {
            name
            for name, spec in specs.items()
            if names & set(spec.flaggems) or (module and name.removeprefix("aten.") == module)
        }
        selected |= hits
        if module and not hits:
            unexercised[module] = paths[module]
    reason = f"{len(selected)} catalog operator(s) from {len(paths)} changed operator module(s)"
    if functions.get(""):
        reason += f" and {len(functions[''])} function(s) whose registrations changed"
    return Selection(sorted(selected), reason, unexercised)


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def changed_in_git(repo: Path, base: str, catalog: Callable[[], Mapping[str, OpSpec]]) -> Selection:
    """`select_operators` for the commits of `repo`'s HEAD since it left `base` (the merge-base diff a
    pull request shows). Raises ValueError with git's own words when `base` is unknown there."""
    merge_base = _git(repo, "merge-base", base, "HEAD")
    if merge_base.returncode != 0:
        why = (merge_base.stderr.strip().splitlines() or ["no common ancestor with HEAD"])[-1]
        raise ValueError(f"{base!r} in {repo}: {why}")
    since = merge_base.stdout.strip()
    changed = [p for p in _git(repo, "diff", "--name-only", since, "HEAD").stdout.splitlines() if p]
    head: dict[str, str] = {}
    old: dict[str, str] = {}
    for path in changed:
        if (repo / path).is_file():
            head[path] = (repo / path).read_text(errors="replace")
        shown = _git(repo, "show", f"{since}:{path}")
        if shown.returncode == 0:
            old[path] = shown.stdout
    return select_operators(changed, head, old, catalog)
