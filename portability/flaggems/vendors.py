"""What each FlagGems vendor backend declares, read from the installed package's files without its hardware.

FlagGems ships one backend per vendor (`runtime/backend/_<vendor>/__init__.py`). Each declares:
- dtype support: 5.3.x `VendorDescriptor(fp64_enabled=False, ...)` flags; 5.0.2 lists vendors in
  `runtime/backend/device.py` (`UNSUPPORT_FP64 = [vendors.CAMBRICON, ...]`);
- `CUSTOMIZED_UNUSED_OPS`: FlagGems function names it does not register on that vendor (PyTorch runs
  those operators), sometimes per architecture (`if arch_version == 300:`), kept with its condition;
- `op_black_list.yaml` (some vendors): operators a compatibility test found failing. FlagGems' code does
  not read it: it is reported as declared, not as applied.
A vllm-plugin-FL tree adds `vllm_fl/dispatch/config/<platform>.yaml`, whose `flagos_blacklist` names the
FlagGems operators that plugin leaves off on that platform.

Everything is parsed (ast, yaml), never imported: vendor modules import their vendor's toolkit
(`torch_mlu`, `torch_npu`...) and probe hardware at import.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from portability.flaggems.package import package_dir, parse
from portability.flaggems.registry import Registration, registrations
from portability.flaggems.source import describe, label
from portability.scorecard.safe_text import md_text

DTYPE_FLAGS = {"fp64_enabled": "fp64", "bf16_enabled": "bf16", "int64_enabled": "int64"}
UNSUPPORTED_LISTS = {"UNSUPPORT_FP64": "fp64", "UNSUPPORT_BF16": "bf16", "UNSUPPORT_INT64": "int64"}
# vllm-plugin-FL names its configs after vLLM's platform vendor names; FlagGems after its own vendors
VLLM_FL_ALIASES = {"musa": "mthreads", "gcu": "enflame", "cuda": "nvidia"}
VLLM_FL_CONFIG_DIR = Path("vllm_fl") / "dispatch" / "config"


@dataclass
class TurnedOff:
    """Operator names a vendor (or vllm-plugin-FL) leaves off, and what that means for the registry."""

    names: list[str]
    overloads: list[str]  # registered aten overloads whose FlagGems function is named
    unmatched: list[str]  # names no registered function has: they turn nothing off in the registry
    condition: str = ""  # source of the `if` the declaration sits under ("" when unconditional)
    origin: str = ""  # where it was read (a file, relative to its package or tree)


@dataclass
class VendorDeclaration:
    vendor: str
    device: str
    disabled_dtypes: list[str]
    unused: list[TurnedOff] = field(default_factory=list)  # CUSTOMIZED_UNUSED_OPS (one per condition)
    black_list: list[tuple[str, str]] = field(default_factory=list)  # op_black_list.yaml (name, reason)
    vllm_fl: list[TurnedOff] = field(default_factory=list)  # vllm-plugin-FL flagos_blacklist, per config
    problems: list[str] = field(default_factory=list)  # what could not be read statically, and why


@dataclass
class DeclaredSupport:
    flag_gems: str  # version (and commit) of the package read
    registered: int  # aten overloads in its table
    vendors: list[VendorDeclaration]
    vllm_fl: str = ""  # the vllm-plugin-FL tree read, if any
    vllm_fl_other: list[str] = field(default_factory=list)  # its configs for platforms FlagGems lacks
    vllm_fl_problems: list[str] = field(default_factory=list)  # its configs that could not be read


def _turned_off(names: Iterable[str], by_function: dict[str, list[str]], **where: str) -> TurnedOff:
    names = list(dict.fromkeys(str(n) for n in names))
    overloads = sorted({key for name in names for key in by_function.get(name, [])})
    return TurnedOff(names, overloads, [n for n in names if n not in by_function], **where)


def _both(condition: str, test: str) -> str:
    return f"{condition} and ({test})" if condition else test


def _assignments(body: list[ast.stmt], target: str, condition: str = "") -> Iterator[tuple[str, ast.expr]]:
    """(condition, value) of every top-level-or-conditional assignment to `target`."""
    for node in body:
        if isinstance(node, ast.If):
            test = ast.unparse(node.test)
            yield from _assignments(node.body, target, _both(condition, test))
            yield from _assignments(node.orelse, target, _both(condition, f"not ({test})"))
        elif isinstance(node, ast.Try):
            for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody):
                yield from _assignments(block, target, condition)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(t, "id", None) == target for t in targets) and node.value is not None:
                yield condition, node.value


def _descriptor(tree: ast.Module) -> dict[str, object]:
    """Keyword arguments of the module's VendorDescriptor(...)/VendorInfoBase(...) call (literals only)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
            "VendorDescriptor",
            "VendorInfoBase",
        ):
            found: dict[str, object] = {}
            for kw in node.keywords:
                try:
                    found[str(kw.arg)] = ast.literal_eval(kw.value)
                except (ValueError, TypeError, SyntaxError):
                    found[str(kw.arg)] = None  # computed at import (e.g. get_triton_extra_name())
            return found
    return {}


def _flag_defaults(backend: Path) -> dict[str, bool]:
    """Defaults of the dtype flags in backend_utils' descriptor dataclass (5.3.x: all True)."""
    path = backend / "backend_utils.py"
    if not path.is_file():
        return {}
    defaults: dict[str, bool] = {}
    for node in ast.walk(parse(path)):
        if isinstance(node, ast.AnnAssign) and getattr(node.target, "id", "") in DTYPE_FLAGS:
            value = node.value
            if isinstance(value, ast.Constant) and isinstance(value.value, bool):
                defaults[node.target.id] = value.value  # type: ignore[union-attr]
    return defaults


def _unsupported_lists(backend: Path) -> dict[str, set[str]]:
    """5.0.2's vendor lists per dtype (`UNSUPPORT_FP64 = [vendors.CAMBRICON, ...]`) -> {dtype: vendors}."""
    path = backend / "device.py"
    found: dict[str, set[str]] = {}
    if not path.is_file():
        return found
    for name, dtype in UNSUPPORTED_LISTS.items():
        for _, value in _assignments(parse(path).body, name):
            if isinstance(value, (ast.List, ast.Tuple)):
                found[dtype] = {getattr(e, "attr", "").lower() for e in value.elts}
    return found


def _yaml(path: Path, problems: list[str]) -> dict:
    """A YAML mapping, or {} with the reason added to `problems`."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, OSError, UnicodeDecodeError) as exc:
        problems.append(f"{path.name}: not readable YAML ({type(exc).__name__})")
        return {}
    return data if isinstance(data, dict) else {}


def _black_list(folder: Path, problems: list[str]) -> list[tuple[str, str]]:
    path = folder / "op_black_list.yaml"
    if not path.is_file():
        return []
    entries = _yaml(path, problems).get("unsupported_operators") or []
    return [(str(e.get("name")), str(e.get("reason", ""))) for e in entries if isinstance(e, dict)]


def _vendor(folder: Path, by_function: dict[str, list[str]], flags: dict, lists: dict) -> VendorDeclaration:
    try:
        tree = parse(folder / "__init__.py")
    except (SyntaxError, UnicodeDecodeError) as exc:
        why = f"{folder.name}/__init__.py: not parsed ({type(exc).__name__})"
        return VendorDeclaration(folder.name.lstrip("_"), "?", [], problems=[why])
    descriptor = _descriptor(tree)
    vendor = str(descriptor.get("vendor_name") or folder.name.lstrip("_"))
    off = {
        dtype for flag, dtype in DTYPE_FLAGS.items() if descriptor.get(flag, flags.get(flag, True)) is False
    }
    off |= {dtype for dtype, names in lists.items() if vendor in names}
    declaration = VendorDeclaration(vendor, str(descriptor.get("device_name") or "?"), sorted(off))
    origin = f"runtime/backend/{folder.name}/__init__.py"
    for condition, value in _assignments(tree.body, "CUSTOMIZED_UNUSED_OPS"):
        try:
            names = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError):
            declaration.problems.append(f"CUSTOMIZED_UNUSED_OPS is computed ({ast.unparse(value)[:80]})")
            continue
        names = [names] if isinstance(names, str) else names
        declaration.unused.append(_turned_off(names, by_function, condition=condition, origin=origin))
    declaration.black_list = _black_list(folder, declaration.problems)
    return declaration


def _vllm_fl_configs(tree: Path, by_function: dict[str, list[str]], support: DeclaredSupport) -> None:
    """Each config's `flagos_blacklist` onto its FlagGems vendor; configs of platforms FlagGems has no
    backend for, and unreadable ones, are listed on `support`."""
    folder = tree / VLLM_FL_CONFIG_DIR if (tree / VLLM_FL_CONFIG_DIR).is_dir() else tree
    by_vendor = {v.vendor: v for v in support.vendors}
    configs = sorted(folder.glob("*.yaml"))
    if not configs:
        support.vllm_fl_problems.append(f"{tree}: no {VLLM_FL_CONFIG_DIR}/*.yaml")
    for path in configs:
        stem = path.stem  # "nvidia", "musa", "nvidia_hopper" (an architecture's variant)
        prefix = stem.split("_")[0]
        candidates = (stem, VLLM_FL_ALIASES.get(stem), prefix, VLLM_FL_ALIASES.get(prefix))
        vendor = next((c for c in candidates if c in by_vendor), None)
        if vendor is None:
            support.vllm_fl_other.append(path.name)
            continue
        names = _yaml(path, support.vllm_fl_problems).get("flagos_blacklist") or []
        names = names if isinstance(names, list) else []
        by_vendor[vendor].vllm_fl.append(_turned_off(names, by_function, origin=path.name))


def read_declared_support(root: Path | None = None, vllm_fl: Path | None = None) -> DeclaredSupport:
    """The declarations of every vendor backend of the flag_gems package at `root` (the importable one),
    with a vllm-plugin-FL tree's blacklists when `vllm_fl` is given."""
    root = root or package_dir()
    table: list[Registration] = registrations(root)
    by_function: dict[str, list[str]] = {}
    for entry in table:
        by_function.setdefault(entry.function, []).append(entry.key)
    backend = root / "runtime" / "backend"
    flags, lists = _flag_defaults(backend), _unsupported_lists(backend)
    folders = sorted(p for p in backend.glob("_*") if (p / "__init__.py").is_file())
    vendors = [_vendor(folder, by_function, flags, lists) for folder in folders]
    result = DeclaredSupport(label(describe(root)), len({r.key for r in table}), vendors)
    if vllm_fl is not None:
        result.vllm_fl = str(vllm_fl)
        _vllm_fl_configs(vllm_fl, by_function, result)
    return result


def to_json(support: DeclaredSupport) -> dict:
    return asdict(support)


def from_json(data: dict) -> DeclaredSupport:
    """The inverse of to_json (a run directory's declared-support.json)."""

    def declaration(v: dict) -> VendorDeclaration:
        return VendorDeclaration(
            **{
                **v,
                "unused": [TurnedOff(**t) for t in v.get("unused", [])],
                "vllm_fl": [TurnedOff(**t) for t in v.get("vllm_fl", [])],
                "black_list": [tuple(b) for b in v.get("black_list", [])],
            }
        )

    return DeclaredSupport(**{**data, "vendors": [declaration(v) for v in data.get("vendors", [])]})


def _count_words(sets: list[TurnedOff]) -> str:
    """`3`, or per condition: `117 if arch_version == 300; 3 otherwise`."""
    if not sets:
        return "–"
    if len(sets) == 1 and not sets[0].condition:
        return str(len(sets[0].overloads))
    return "; ".join(
        f"{len(s.overloads)} if {md_text(s.condition, cap=60)}" if s.condition else str(len(s.overloads))
        for s in sets
    )


def _names(items: Iterable[str], cap: int) -> str:
    return md_text(", ".join(items), cap=cap) or "–"


def _vendor_details(v: VendorDeclaration, cap: int) -> list[str]:
    lines: list[str] = []
    for s in v.unused:
        unused = "- CUSTOMIZED_UNUSED_OPS" + (f" (if {md_text(s.condition, cap=120)})" if s.condition else "")
        if s.overloads:
            lines.append(f"{unused}, {len(s.overloads)} overloads off: {_names(s.overloads, cap)}")
        if s.unmatched:
            lines.append(f"{unused}, names no registered function has: {_names(s.unmatched, cap)}")
    if v.black_list:
        listed = [f"{name} ({reason})" if reason else name for name, reason in v.black_list]
        lines.append(f"- op_black_list.yaml (not applied by FlagGems): {_names(listed, cap)}")
    for s in v.vllm_fl:
        config = f"- vllm-plugin-FL {md_text(s.origin)}"
        lines.append(f"{config}, {len(s.overloads)} overloads off: {_names(s.overloads, cap)}")
        if s.unmatched:
            lines.append(f"{config}, not FlagGems aten registrations: {_names(s.unmatched, cap)}")
    lines += [f"- not read: {md_text(p)}" for p in v.problems]
    return lines


def markdown(
    support: DeclaredSupport, measured: dict[str, str] | None = None, cap: int = 20_000, details: bool = True
) -> list[str]:
    """The declared-support section: a row per vendor backend, then (`details`) per vendor what it turns
    off. `measured` (a run's scorecard): vendor -> the cells of the run where that vendor's FlagGems ran;
    `cap`: characters per list (a PR comment has a size limit)."""
    vllm = bool(support.vllm_fl)
    head = "| vendor | device | dtypes off | overloads off | op_black_list.yaml |"
    head += " vllm-plugin-FL blacklist |" if vllm else ""
    head += " measured here |" if measured is not None else ""
    lines = [
        f"FlagGems {md_text(support.flag_gems)}: what each of its {len(support.vendors)} vendor backends "
        f"declares, read from the package without the vendor's hardware. *dtypes off*: those it declares "
        f"unsupported; *overloads off*: of the {support.registered} registered aten overloads, those whose "
        "function `CUSTOMIZED_UNUSED_OPS` names (PyTorch runs them on that vendor); *op_black_list.yaml*: "
        "operators its compatibility test found failing (documentation: FlagGems does not apply it)."
        + (f" vllm-plugin-FL: `flagos_blacklist` of {md_text(support.vllm_fl)}." if vllm else ""),
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for v in support.vendors:
        row = (
            f"| {md_text(v.vendor)} | {md_text(v.device)} | {', '.join(v.disabled_dtypes) or '–'} | "
            f"{_count_words(v.unused)} | {len(v.black_list) or '–'} |"
        )
        row += f" {_count_words(v.vllm_fl)} |" if vllm else ""
        row += f" {md_text(measured.get(v.vendor, '–'))} |" if measured is not None else ""
        lines.append(row)
    for v in support.vendors if details else []:
        items = _vendor_details(v, cap)
        if items:
            lines += ["", f"<details><summary>{md_text(v.vendor)}</summary>", "", *items, "", "</details>"]
    lines += [f"- not read: {md_text(p)}" for p in support.vllm_fl_problems]
    if support.vllm_fl_other:
        other = _names(support.vllm_fl_other, cap)
        lines += ["", f"vllm-plugin-FL configs for platforms FlagGems has no backend for: {other}"]
    return lines
