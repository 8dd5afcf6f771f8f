"""What the installed FlagGems' API can do, probed on the package itself, never inferred from its version.

A feature is a callable of the `flag_gems` module with the parameters the matrix passes it. The same
probe reads an imported module (`of_module`: the adapter and the serving hook, where FlagGems
initialises) or the package's source (`of_source`: any host, `import flag_gems` not needed), so the
tests check both FlagGems releases on a CPU host. A FlagGems that lacks a feature the matrix needs makes
the cell `unavailable: flag_gems <version> has no <what>`.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from portability.flaggems.package import FlagGemsUnavailable, package_dir, parse

# feature -> ((callable, parameter or None), ...), all required; and what it is, for the reason text
FEATURES: dict[str, tuple[tuple[tuple[str, str | None], ...], str]] = {
    "per_op_context": ((("use_gems", "include"),), "use_gems(include=...) (one operator switched on)"),
    "only_enable": ((("only_enable", "include"),), "only_enable(include=...) (the bisection's subsets)"),
    "enable_unused": ((("enable", "unused"),), "enable(unused=...) (operators left off)"),
    "call_log": (
        (("enable", "record"), ("enable", "path"), ("only_enable", "record"), ("only_enable", "path")),
        "enable/only_enable(record=True, path=...) (its call log)",
    ),
    "registrar": ((("enable", "registrar"),), "enable(registrar=...) (a registry read without registering)"),
    "registry_api": ((("all_registered_keys", None), ("all_registered_ops", None)), "all_registered_keys()"),
}


@dataclass(frozen=True)
class Features:
    version: str
    # top-level callable -> its parameter names (classes: __init__'s); None: present, parameters unknown
    # (a name __init__.py imports from elsewhere: the source probe cannot disprove it, the module probe can)
    signatures: Mapping[str, frozenset[str] | None]

    def has(self, feature: str) -> bool:
        needs, _ = FEATURES[feature]
        return all(
            name in self.signatures
            and (param is None or self.signatures[name] is None or param in self.signatures[name])
            for name, param in needs
        )

    def missing(self, *features: str) -> str | None:
        """`flag_gems 5.0.2 has no X` for the first feature it lacks, None when it has them all."""
        for feature in features:
            if not self.has(feature):
                return f"flag_gems {self.version} has no {FEATURES[feature][1]}"
        return None

    def require(self, *features: str) -> None:
        why = self.missing(*features)
        if why is not None:
            raise FlagGemsUnavailable(why)

    def available(self) -> list[str]:
        return [feature for feature in FEATURES if self.has(feature)]


def _parameters(obj: object) -> frozenset[str] | None:
    """Its parameter names; None where they cannot be told (no signature, or **kwargs takes any)."""
    target = obj.__init__ if inspect.isclass(obj) else obj  # type: ignore[misc]
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(params) - {"self"}


def of_module(flag_gems: ModuleType) -> Features:
    """Probe an imported flag_gems module."""
    names = {name for name, _ in _needs_flat()}
    signatures = {
        name: _parameters(getattr(flag_gems, name))
        for name in names
        if callable(getattr(flag_gems, name, None))
    }
    return Features(str(getattr(flag_gems, "__version__", "unknown")), signatures)


def _needs_flat() -> list[tuple[str, str | None]]:
    return [need for needs, _ in FEATURES.values() for need in needs]


def _arg_names(args: ast.arguments) -> frozenset[str] | None:
    if args.kwarg is not None:  # **kwargs: any keyword is taken
        return None
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    return frozenset(a.arg for a in every) - {"self"}


def of_source(root: Path | None = None) -> Features:
    """Probe the flag_gems package at `root` (the importable one by default) from its `__init__.py`."""
    from portability.flaggems.source import package_version

    root = root or package_dir()
    signatures: dict[str, frozenset[str] | None] = {}
    for node in parse(root / "__init__.py").body:
        if isinstance(node, ast.ImportFrom):
            signatures.update({alias.asname or alias.name: None for alias in node.names if alias.name != "*"})
        elif isinstance(node, ast.FunctionDef):
            signatures[node.name] = _arg_names(node.args)
        elif isinstance(node, ast.ClassDef):
            init = next(
                (n for n in node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"), None
            )
            signatures[node.name] = _arg_names(init.args) if init else None
    return Features(package_version(root), signatures)
