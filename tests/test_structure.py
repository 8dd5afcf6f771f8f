"""The code's own shape: no import cycles, and one status table that every output agrees with."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT

from portability.results import status
from portability.scorecard.markdown import render_markdown
from portability.scorecard.summary import summarize
from portability.scorecard.write import render_junit

PACKAGES = {
    "portability": ROOT / "portability",
    "portability.backends": ROOT / "backends",
    "portability.kernels": ROOT / "kernels",
}


def _module_files() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join([package, *parts])
            found[name.removesuffix(".__init__")] = path
    return found


def _top_level_imports(path: Path, modules: set[str]) -> set[str]:
    """Modules of ours that `path` imports when it is imported (function-level imports run later)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found


def test_no_module_imports_itself_back_through_a_cycle() -> None:
    files = _module_files()
    graph = {name: _top_level_imports(path, set(files)) - {name} for name, path in files.items()}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str], done: set[str]) -> None:
        if node in stack:
            cycles.append([*stack[stack.index(node) :], node])
            return
        if node in done:
            return
        done.add(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt, [*stack, node], done)

    done: set[str] = set()
    for name in sorted(graph):
        visit(name, [], done)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_every_status_has_a_symbol_a_legend_a_junit_mapping_and_a_line_in_the_docs() -> None:
    docs = (ROOT / "docs" / "statuses.md").read_text()
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", docs, flags=re.M))
    assert documented == set(status.STATUSES), "docs/statuses.md's table and the Status table differ"
    legend = status.legend()
    for s in status.STATUS_TABLE:
        assert s.symbol and s.legend and s.junit in ("pass", "failure", "error", "skipped")
        if s.name != "unavailable":  # a cell-level status: never in the operator grid
            assert f"{s.symbol} {s.legend}" in legend


@pytest.mark.parametrize("name", status.STATUSES)
def test_each_status_renders_through_every_output(name: str) -> None:
    """A row of every status reaches the grid with its symbol and the JUnit file with its element."""
    row = {"id": f"x@cpu::op/case::{name}", "kind": "op", "cell": "x@cpu", "backend": "x", "device": "cpu"}
    row |= {"op": "op", "case": "case", "status": name, "reason": f"why {name}", "dtype": "fp32"}
    junit = render_junit([row])
    element = status.junit_element(name)
    if element != "pass":
        assert f"<{element}" in junit
    if name == "unavailable":
        return
    data = summarize([row])
    assert data["grid"]["op"]["x@cpu"]["verdict"] == name
    assert status.SYMBOL[name] in render_markdown(data, None)
