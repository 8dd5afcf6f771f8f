"""Failures native PyTorch shares: a case that gives a wrong result (status fail) on a backend cell and on
the native baseline `torch@<same device>` too most likely has a spec, reference or tolerance problem,
not a backend bug. This only annotates failures; it never hides or reclassifies them."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from portability.plan.case_id import case_key as strip_cell

FIELD = "native_also_fails"
TAG = "native fails too"


def native_cell(cell: str) -> str:
    """The native baseline cell on the device of `cell` ("flaggems@cuda" -> "torch@cuda")."""
    from portability.registry import baseline_name  # the adapter registry imports torch: only when needed

    return f"{baseline_name()}@{cell.partition('@')[2]}"


def case_key(row: dict[str, Any]) -> str:
    """The case id without its cell prefix: the same key names the same case in every cell."""
    return strip_cell(row["id"], row["cell"])


def annotate(failures: list[dict[str, Any]], ops_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`failures` with each status-fail row of a non-native cell copied and given FIELD (True when the
    native cell's row for that case is a fail too), where the native cell on its device passed or failed
    that case. Other rows are returned as they are; the input rows are never modified."""
    native = {(r["cell"], case_key(r)): r["status"] for r in ops_rows if r["cell"] == native_cell(r["cell"])}
    out = []
    for r in failures:
        status = native.get((native_cell(r["cell"]), case_key(r)))
        # compared only against a native verdict on the values (pass or fail): a native error, crash or
        # skip says nothing about whether the check itself is right
        if r["status"] == "fail" and r["cell"] != native_cell(r["cell"]) and status in ("pass", "fail"):
            r = {**r, FIELD: status == "fail"}
        out.append(r)
    return out


def tally(failures: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per cell with at least one compared failure: the baseline cell, how many status-fail cases were
    compared with it, how many of those fail natively too, and how many it has no pass/fail row for."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for r in failures:
        if r["status"] == "fail":
            key = "no_native_row" if FIELD not in r else "also_fail" if r[FIELD] else "native_ok"
            counts[r["cell"]][key] += 1
    return {
        cell: {
            "baseline": native_cell(cell),
            "compared": c["also_fail"] + c["native_ok"],
            "also_fail": c["also_fail"],
            "no_native_row": c["no_native_row"],
        }
        for cell, c in counts.items()
        if c["also_fail"] + c["native_ok"]
    }


def summary_line(cell: str, t: dict[str, Any], md_code: Callable[[Any, int], str]) -> str:
    """One Markdown line for a cell's tally (`md_code` makes the run-supplied cell names code spans)."""
    base = md_code(t["baseline"], 60)
    line = (
        f"- {md_code(cell, 60)}: {t['also_fail']} of {t['compared']} wrong-result failures also fail on "
        f"{base} (the native baseline)"
    )
    line += ": suspect the spec or tolerance, not the backend." if t["also_fail"] else "."
    if t["no_native_row"]:
        line += f" {t['no_native_row']} more not compared (no pass/fail row on {base})."
    return line
