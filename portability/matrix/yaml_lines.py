"""matrix.yaml as a tree with line numbers, and the checks that report a mistake as `FILE:LINE: ...`.

Loading goes through PyYAML's SafeLoader composer (never `yaml.load`): we walk the node tree ourselves
so that every key keeps its line number, and we refuse anchors/aliases outright (they are never needed
in a matrix, and refusing them defuses alias bombs), explicit tags, oversized or too deeply nested files.
`Validator` holds the type and range checks of the hand-written schema in `portability.matrix.config`: each
raises `ConfigError` naming the file line and saying what is allowed, in one line.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import yaml

MAX_NODES = 20_000
MAX_DEPTH = 32
# The tags PyYAML's safe resolver gives plain values; anything else was written explicitly (`!!python/...`).
PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)
MAX_FILE_BYTES = 1_000_000
STR_TAG = "tag:yaml.org,2002:str"
# PyYAML follows YAML 1.1, whose float needs a dot (`1.0e-3`); a plain `1e-3` would be the string "1e-3".
_EXPONENT_FLOAT = re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")

Path_ = tuple[Any, ...]


class ConfigError(Exception):
    """A mistake in matrix.yaml; `str()` is the one line shown to the user."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file, self.line, self.message = file, line, message


def read_yaml(path: Path, file: str) -> tuple[Any, dict[Path_, int]]:
    """The file's YAML tree and the line of every path in it; errors name the file as `file`."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            file, 1, f"cannot read the file ({exc.strerror}), expected a readable matrix file"
        ) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(file, 1, f"file is {len(raw)} bytes, expected at most {MAX_FILE_BYTES}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            file, line, f"byte 0x{raw[exc.start]:02x} is not UTF-8, expected UTF-8 text"
        ) from None
    return _compose(text, file)


def _compose(text: str, file: str) -> tuple[Any, dict[Path_, int]]:
    lines: dict[Path_, int] = {}
    count = 0
    seen: set[int] = set()

    def build(node: yaml.Node, path: Path_, used_at: int = 1) -> Any:
        nonlocal count
        count += 1
        if node.tag not in PLAIN_TAGS:  # explicit tags (!!python/..., !!set, !custom) are never needed
            raise ConfigError(
                file,
                node.start_mark.line + 1,
                f"YAML tag {node.tag.replace('tag:yaml.org,2002:', '!!')!r} is not allowed, "
                "expected plain values (strings, numbers, lists, mappings)",
            )
        if len(path) > MAX_DEPTH:
            raise ConfigError(
                file,
                node.start_mark.line + 1,
                f"nested more than {MAX_DEPTH} levels deep, expected a flat file",
            )
        if count > MAX_NODES:
            raise ConfigError(
                file,
                node.start_mark.line + 1,
                f"more than {MAX_NODES} YAML nodes, expected a small matrix file",
            )
        if id(node) in seen:  # an alias: the same node object appears again where it is used
            raise ConfigError(
                file,
                used_at,
                "YAML anchor/alias reused, expected plain values (anchors are not supported)",
            )
        seen.add(id(node))
        lines.setdefault(path, node.start_mark.line + 1)  # a key's own line wins over its value's
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for k_node, v_node in node.value:
                key = build(k_node, (*path, "<key>"), k_node.start_mark.line + 1)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    raise ConfigError(
                        file,
                        k_node.start_mark.line + 1,
                        f"mapping key {key!r} is not a plain value, expected a name",
                    )
                if key in out:
                    raise ConfigError(
                        file, k_node.start_mark.line + 1, f"duplicate key {key!r}, expected each key once"
                    )
                lines[(*path, key)] = k_node.start_mark.line + 1
                out[key] = build(v_node, (*path, key), k_node.start_mark.line + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [build(v, (*path, i), node.start_mark.line + 1) for i, v in enumerate(node.value)]
        if node.tag == STR_TAG and node.style is None and _EXPONENT_FLOAT.match(node.value):
            return float(node.value)  # `1e-3`: a number in YAML 1.2 and to every reader, a string to PyYAML
        return _SCALARS.construct_object(node, deep=True)

    loader = None
    try:
        loader = yaml.SafeLoader(text)  # its reader already refuses control characters (NUL, ESC...)
        root = loader.get_single_node()
    except RecursionError:  # PyYAML's composer recurses once per nesting level: [[[[...]]]] exhausts it
        line = loader.get_mark().line + 1 if loader else 1
        raise ConfigError(file, line, "nested too deeply to parse, expected a flat file") from None
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        raise ConfigError(
            file, line, f"character #x{exc.character:04x} is not allowed in YAML, expected printable text"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(file, line, f"not valid YAML ({exc.problem}), expected a YAML mapping") from None
    except yaml.YAMLError as exc:
        raise ConfigError(file, 1, f"not valid YAML ({exc}), expected a YAML mapping") from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        raise ConfigError(file, 1, "the file is empty, expected a mapping with a 'backends' key")
    return build(root, ()), lines


# One SafeLoader used only as a constructor of scalar nodes (ints, floats, bools, strings, nulls).
_SCALARS = yaml.SafeLoader("")


# Past this many allowed values an error names the closest few instead of all of them (the catalog has
# some 500 operators: never one line of 500 names).
MAX_LISTED = 12


def one_of(value: Any, allowed: Sequence[str], what: str = "value") -> str:
    """The `expected ...` half of an error about `value` not in `allowed`: every allowed value when they
    are few, else the closest (difflib) and how to list all; "did you mean" when one is close."""
    close = difflib.get_close_matches(str(value), [str(a) for a in allowed], n=3, cutoff=0.6)
    if len(allowed) <= MAX_LISTED:
        listed = f"one of {', '.join(map(str, allowed))}"
        return f"{listed} (did you mean '{close[0]}'?)" if close else listed
    nearest = f"did you mean {', '.join(repr(c) for c in close)}?" if close else "none is close"
    return f"one of the {len(allowed)} known {what}s ({nearest})"


class Validator:
    """The schema's checks for one file: each names the line of `path` and says what is allowed."""

    def __init__(self, file: str, lines: dict[Path_, int]) -> None:
        self.file, self.lines = file, lines

    @staticmethod
    def reporting_to(error: Callable[[Path_, str, str], NoReturn], prefix: Path_ = ()) -> Validator:
        """A Validator whose errors go to `error(path, what, expected)` with `prefix` cut off the path
        (for a block checked apart from its file, e.g. command-line overrides of `serving:`)."""
        return _CallbackValidator(error, prefix)

    one_of = staticmethod(one_of)

    def line(self, path: Path_) -> int:
        p = tuple(path)
        while p and p not in self.lines:
            p = p[:-1]
        return self.lines.get(p, 1)

    def error(self, path: Path_, what: str, expected: str) -> NoReturn:
        raise ConfigError(self.file, self.line(path), f"{what}, expected {expected}")

    def mapping(self, value: Any, path: Path_, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
        name = ".".join(str(p) for p in path) or "the file"
        if not isinstance(value, dict):
            self.error(path, f"{name} is {kind_of(value)}", "a mapping")
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    self.error((*path, key), f"unknown key '{key}' in {name}", one_of(key, allowed, "key"))
        return value

    def str_list(
        self,
        value: Any,
        path: Path_,
        allowed: Sequence[str] | None = None,
        what: str = "name",
        strict: bool = False,
    ) -> list[str]:
        """A list of names (a single string counts as a list of one, unless `strict`: then the list must
        be a non-empty list without repeats)."""
        if isinstance(value, str) and not strict:
            value = [value]
        if not isinstance(value, list) or (strict and not value):
            shown = kind_of(value) if not strict else repr(value)
            self.error(
                path, f"{'.'.join(map(str, path))} is {shown}", f"a {'non-empty ' * strict}list of {what}s"
            )
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error((*path, i), f"{what} {item!r} is {kind_of(item)}", f"a {what} string")
            if allowed is not None and item not in allowed:
                self.error((*path, i), f"unknown {what} '{item}'", one_of(item, allowed, what))
        if strict and len(set(value)) != len(value):
            self.error(path, f"{path[-1]} lists a name twice", "each name once")
        return list(value)

    def number(
        self,
        value: Any,
        path: Path_,
        minimum: float = 0.0,
        integer: bool = False,
        allow_zero: bool = True,
        maximum: float = math.inf,
        expected: str | None = None,
    ) -> float:
        """A finite number (an integer when `integer`) within [minimum, maximum] (`minimum` itself
        excluded unless `allow_zero`); `expected` replaces the default wording of the error."""
        ok = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok:
            self.error(
                path, f"{path[-1]} is {kind_of(value)}", expected or ("an integer" if integer else "a number")
            )
        if (
            not math.isfinite(value)
            or value < minimum
            or (not allow_zero and value == minimum)
            or value > maximum
        ):
            bound = f">= {minimum}" if allow_zero else f"> {minimum}"
            if maximum < math.inf:
                bound += f" and <= {maximum:g}"
            self.error(path, f"{path[-1]} is {value!r}", expected or f"a finite number {bound}")
        return value

    def boolean(self, value: Any, path: Path_) -> bool:
        if not isinstance(value, bool):
            self.error(path, f"{path[-1]} is {value!r}", "true or false")
        return value

    def choice(self, value: Any, path: Path_, allowed: Sequence[str], name: str | None = None) -> str:
        """`value` if it is one of `allowed`; `name` is how the error names the value (default: its key)."""
        if value not in allowed:
            self.error(path, f"{name or path[-1]} is {value!r}", one_of(value, allowed))
        return value


class _CallbackValidator(Validator):
    def __init__(self, error: Callable[[Path_, str, str], NoReturn], prefix: Path_) -> None:
        super().__init__("", {})
        self._report, self.prefix = error, tuple(prefix)

    def error(self, path: Path_, what: str, expected: str) -> NoReturn:
        path = tuple(path)
        self._report(
            path[len(self.prefix) :] if path[: len(self.prefix)] == self.prefix else path, what, expected
        )
        raise AssertionError("the error callback must raise")  # pragma: no cover


def kind_of(value: Any) -> str:
    """How a value is described in an error message: "empty", "a list", "the string 'x'"..."""
    if value is None:
        return "empty"
    return {
        dict: "a mapping",
        list: "a list",
        str: f"the string {value!r:.40}",
        bool: f"the boolean {value}",
        int: f"the integer {value}",
        float: f"the number {value}",
    }.get(type(value), type(value).__name__)
