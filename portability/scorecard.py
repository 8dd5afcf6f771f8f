"""Scorecard: results.jsonl -> scorecard.md (PR comment), scorecard.json, junit.xml.

The Markdown is posted to pull requests, so every piece of text that came from a run (error messages,
operator and case names, device names) goes through `md_text`: it cannot break the table, inject HTML,
ping people (@mentions) or link issues (#refs), and is capped in length. The whole comment is kept under
64 KB; the summary always stays, the grid and failure details collapse or shrink first.
"""

from __future__ import annotations

import html
import json
import math
import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tabulate import tabulate

from portability import native_check
from portability.results import FAILING, STATUSES, latest_by_id, read_results

MAX_COMMENT_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 240
ZWSP = "\u200b"
MARKER = "<!-- flagos-portability-scorecard -->"

SYMBOL = {
    "pass": "✓",
    "fail": "✗",
    "error": "E",
    "timeout": "⏱",
    "crash": "💥",
    "oom": "OOM",
    "unsupported": "∅",
    "skip": "–",
    "infra": "?",
    "unavailable": "·",
}
LEGEND = (
    "✓ all cases pass (geomean speedup vs torch on the same device) · ✗ wrong result · E error · "
    "⏱ timeout · 💥 crash · OOM out of memory · ∅ unsupported dtype/op · – skipped · ? infra "
    "· blank: not run"
)


# Terminal colour codes, then control and invisible formatting characters: bidi overrides/isolates can
# make a line read differently from what it says ("Trojan Source"), zero-width ones hide text.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[@-_]")
_INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)


def md_text(text: Any, cap: int = MAX_MESSAGE_CHARS) -> str:
    """Untrusted text -> one safe Markdown table-cell fragment: one line, at most `cap` characters before
    escaping, no HTML, no table breaks, no code spans or emphasis, no @mentions or #refs."""
    s = str(text if text is not None else "")[: cap * 8 + 64]  # never run the regexes over megabytes
    s = _INVISIBLE.sub("", _ANSI.sub("", s))
    s = re.sub(r"\s+", " ", s).strip()
    if len(s) > cap:
        s = s[: cap - 1] + "…"
    s = html.escape(s, quote=False)
    s = re.sub(r"([\\`*_\[\]|~])", r"\\\1", s)
    s = s.replace("@", "@" + ZWSP).replace("#", "#" + ZWSP)
    return s


def _geomean(values: list[float]) -> float | None:
    vals = [v for v in values if v and v > 0 and math.isfinite(v)]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def summarize(rows: list[dict[str, Any]], planned: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Per-cell summary, operator × cell grid and failure list, from the latest row of each case.

    `planned` (the run's plan.json cases) lets the scorecard name cases that were planned but never ran
    (a run cut short by a time limit), instead of silently showing a smaller matrix."""
    latest = list(latest_by_id(rows).values())
    have = {r["id"] for r in latest}
    missing = [c for c in (planned or []) if c["id"] not in have]
    not_run: dict[str, Counter[str]] = defaultdict(Counter)
    for c in missing:
        not_run[c["cell"]][c["op"]] += 1
    cells = {r["cell"]: r for r in latest if r.get("kind") == "cell"}
    ops_rows = [r for r in latest if r.get("kind") == "op"]
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in ops_rows:
        by_cell[r["cell"]].append(r)
    # failures that torch@<same device> shares are flagged (native_also_fails), never dropped
    failures = native_check.annotate([r for r in ops_rows if r["status"] in FAILING], ops_rows)
    native = native_check.tally(failures)
    summary = []
    for cell_id in sorted(set(cells) | set(by_cell)):
        meta = cells.get(cell_id, {})
        rs = by_cell.get(cell_id, [])
        counts = Counter(r["status"] for r in rs)
        ops = {r["op"] for r in rs}
        passing_ops = {
            op
            for op in ops
            if all(r["status"] in ("pass", "unsupported", "skip") for r in rs if r["op"] == op)
            and any(r["status"] == "pass" for r in rs if r["op"] == op)
        }
        speedups = [r["speedup"] for r in rs if r["status"] == "pass" and r.get("speedup")]
        summary.append(
            {
                "cell": cell_id,
                "backend": meta.get("backend", cell_id.split("@")[0]),
                "device": meta.get("device", cell_id.split("@")[-1]),
                "device_name": meta.get("device_name")
                or next((r.get("device_name") for r in rs if r.get("device_name")), ""),
                "state": meta.get("status", "pass") if rs or meta else "pass",
                "reason": meta.get("reason"),
                "cases": len(rs),
                "counts": dict(counts),
                "operators": len(ops),
                "operators_passing": len(passing_ops),
                "geomean_speedup": _geomean(speedups),
                "faster_than_native": (sum(1 for s in speedups if s > 1.0) / len(speedups))
                if speedups
                else None,
                "compile_s": round(sum(r.get("compile_s") or 0 for r in rs), 2),
                "not_run": sum(not_run[cell_id].values()),
                "native_check": native.get(cell_id),
                "versions": meta.get("versions")
                or next((r.get("versions") for r in rs if r.get("versions")), {}),
            }
        )
    grid: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for cell_id, rs in by_cell.items():
        per_op: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rs:
            per_op[r["op"]].append(r)
        for op, items in per_op.items():
            counts = Counter(r["status"] for r in items)
            speed = _geomean([r["speedup"] for r in items if r["status"] == "pass" and r.get("speedup")])
            grid[op][cell_id] = {
                "counts": dict(counts),
                "cases": len(items),
                "geomean_speedup": speed,
                "verdict": _verdict(counts),
            }
    for cell_id, per_op in not_run.items():
        for op, n in per_op.items():
            entry = grid[op].setdefault(
                cell_id, {"counts": {}, "cases": 0, "geomean_speedup": None, "verdict": "skip"}
            )
            entry["not_run"] = n
    serving = [r for r in latest if r.get("kind") == "serving"]
    return {"cells": summary, "grid": grid, "failures": failures, "serving": serving, "not_run": len(missing)}


def _verdict(counts: Counter[str] | dict[str, int]) -> str:
    for status in ("crash", "timeout", "oom", "error", "fail"):
        if counts.get(status):
            return status
    if counts.get("pass"):
        return "pass"
    for status in ("unsupported", "skip", "infra"):
        if counts.get(status):
            return status
    return "skip"


def _grid_entry(entry: dict[str, Any] | None) -> str:
    if not entry:
        return ""
    if not entry["cases"]:
        return f"not run {entry.get('not_run', 0)}"
    suffix = f" (+{entry['not_run']} not run)" if entry.get("not_run") else ""
    return _ran_entry(entry) + suffix


def _ran_entry(entry: dict[str, Any]) -> str:
    verdict = entry["verdict"]
    sym = SYMBOL[verdict]
    counts = entry["counts"]
    if verdict == "pass":
        sp = entry["geomean_speedup"]
        return f"{sym} {sp:.2f}x" if sp else sym
    bad = sum(counts.get(s, 0) for s in FAILING)
    return f"{sym} {bad}/{entry['cases']}" if bad else sym


def _fit_table(rows: list[list[Any]], headers: list[str], budget: int, what: str) -> str:
    """A GitHub table of `rows` in at most `budget` bytes: whole rows are dropped from the end (with a line
    saying how many and where they are) rather than ever cutting a row in half."""
    table = tabulate(rows, headers=headers, tablefmt="github")
    keep = len(rows)
    while len(table.encode()) > budget and keep > 0:
        # shrink in proportion to the overshoot (a few rounds, not one per row)
        keep = min(keep - 1, int(keep * budget / len(table.encode())))
        keep = max(keep, 0)
        table = tabulate(rows[:keep], headers=headers, tablefmt="github")
        table += f"\n\n_… {len(rows) - keep} more {what} in scorecard.json._"
    return table


def _lines_within(lines: list[str], budget: int) -> list[str]:
    """The leading `lines` whose total size (one newline each) stays within `budget` bytes."""
    kept: list[str] = []
    for line in lines:
        budget -= len(line.encode()) + 1
        if budget < 0:
            break
        kept.append(line)
    return kept


def render_markdown(
    data: dict[str, Any], run: dict[str, Any] | None = None, limit: int = MAX_COMMENT_BYTES
) -> str:
    """The PR comment, at most `limit` bytes (UTF-8). What gives way, in order: the failure list (cut, with
    a count), the operator grid (collapsed into <details>, then left out), the coverage list, the cells
    table (whole rows, with a count). The title, the verdict line and the cells table's head always stay."""
    head = [MARKER, "## FlagOS portability scorecard", ""]
    if run:
        head.append(
            f"Host `{md_text(run.get('host'), 60)}` · {md_text(run.get('platform'), 80)} · "
            f"wall {md_text(run.get('wall_s', '?'), 20)} s · `{md_text(run.get('command'), 200)}`"
        )
        head.append("")
    cell_rows = []
    for c in data["cells"]:
        counts = c["counts"]
        if c["state"] in ("unavailable", "error"):
            cell_rows.append(
                [
                    md_text(c["cell"], 60),
                    md_text(c["device_name"] or "—", 40),
                    f"{c['state']}: {md_text(c['reason'])}",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                ]
            )
            continue
        bad = {s: counts.get(s, 0) for s in FAILING if counts.get(s)}
        other = {s: counts.get(s, 0) for s in ("unsupported", "skip", "infra") if counts.get(s)}
        gm = c["geomean_speedup"]
        ftn = c["faster_than_native"]
        if c.get("not_run"):
            other["not run"] = c["not_run"]
        cell_rows.append(
            [
                md_text(c["cell"], 60),
                md_text(c["device_name"], 40),
                "ran",
                counts.get("pass", 0),
                ", ".join(f"{k} {v}" for k, v in bad.items()) or "0",
                ", ".join(f"{k} {v}" for k, v in other.items()) or "",
                f"{c['operators_passing']}/{c['operators']}",
                f"{gm:.2f}x" if gm else "",
                f"{ftn:.0%}" if ftn is not None else "",
            ]
        )
    n_fail = sum(1 for _ in data["failures"])
    verdict = "**All run cases pass.**" if not n_fail else f"**{n_fail} failing case(s).**"
    if not data["grid"]:
        verdict = "**No operator case in this run.**"
    bad_serving = [r for r in data.get("serving", []) if r.get("status") in FAILING]
    if bad_serving:
        verdict += f" **{len(bad_serving)} Qwen3 serving row(s) fail** (table below)."
    if data.get("not_run"):
        verdict += (
            f" **{data['not_run']} planned case(s) were not run** (the run was cut short; "
            "`portability run --resume` finishes it)."
        )
    head_bytes = len("\n".join([*head, verdict, "", "### Cells", ""]).encode())
    summary = _fit_table(
        cell_rows,
        [
            "cell",
            "device",
            "state",
            "pass",
            "failing",
            "skipped",
            "ops passing",
            "geomean speedup",
            "faster than native",
        ],
        max(2_000, limit // 2 - head_bytes),
        "cells",
    )
    sections = [*head, verdict, "", "### Cells", "", summary, ""]
    native = [
        native_check.summary_line(c["cell"], c["native_check"], md_text)
        for c in data["cells"]
        if c.get("native_check")
    ]
    if native:  # one line per cell, at most a sixteenth of the comment
        kept_native = _lines_within(native, limit // 16)
        more = len(native) - len(kept_native)
        sections += [*kept_native, *([f"- … {more} more cells in scorecard.json"] if more else []), ""]
    if data.get("serving"):
        try:
            from portability.serving import render_serving_table

            table = render_serving_table(data["serving"])
            if len(table.encode()) > limit // 8:
                table = (
                    f"_{len(data['serving'])} serving rows: too many for a PR comment, see scorecard.json._"
                )
            sections += ["### Qwen3 serving (engine × backend cell)", "", table, ""]
        except ImportError:
            pass
    cov = data.get("coverage")
    if cov:
        cap = 20_000
        uncovered = md_text(", ".join(cov["uncovered"]), cap=cap)
        while len(uncovered.encode()) > limit // 8:  # escaping can grow text up to 6x: measure the bytes
            cap //= 2
            uncovered = md_text(", ".join(cov["uncovered"]), cap=cap)
        sections += [
            f"FlagGems coverage: the catalog exercises **{cov['covered']}/{cov['registered']}** aten "
            "overloads FlagGems registers (measured by dispatch, see `portability coverage`).",
            "",
            f"<details><summary>{len(cov['uncovered'])} uncovered overloads</summary>\n\n"
            + uncovered
            + "\n\n</details>",
            "",
        ]
    cells = [c["cell"] for c in data["cells"] if c["state"] not in ("unavailable", "error") and c["cases"]]
    grid_rows = [
        [md_text(op, 60)] + [_grid_entry(data["grid"][op].get(cell)) for cell in cells]
        for op in sorted(data["grid"])
    ]
    grid = tabulate(grid_rows, headers=["operator", *[md_text(c, 40) for c in cells]], tablefmt="github")
    fail_lines = [
        f"- `{md_text(r['cell'], 60)}` {md_text(r['op'], 60)} [{md_text(r['case'], 60)}] "
        f"{md_text(r['dtype'], 10)}: **{md_text(r['status'], 12)}**"
        + (f" ({native_check.TAG})" if r.get(native_check.FIELD) else "")
        + f" — {md_text(r.get('reason'))}"
        + (
            f" (max abs err {r['max_abs_err']:.3g}, tol atol={r.get('atol'):g} rtol={r.get('rtol'):g})"
            if isinstance(r.get("max_abs_err"), (int, float))
            and isinstance(r.get("atol"), (int, float))
            and isinstance(r.get("rtol"), (int, float))
            and r["status"] == "fail"
            else ""
        )
        for r in data["failures"]
    ]
    text = "\n".join(sections)
    grid_block = f"### Operators × cells\n\n{LEGEND}\n\n{grid}\n"
    collapsed = (
        f"<details><summary>Operators × cells ({len(grid_rows)} operators)</summary>\n\n"
        f"{LEGEND}\n\n{grid}\n\n</details>\n"
    )
    # Room the failure list is promised before the grid takes what is left (at most a third of it).
    room = limit - len(text.encode()) - 400
    fail_bytes = sum(len(line.encode()) + 1 for line in fail_lines)
    reserve = min(fail_bytes, max(room, 0) // 3)
    if not grid_rows:
        pass
    elif len((text + grid_block).encode()) < limit * 0.6:
        text += "\n" + grid_block
    elif len(collapsed.encode()) <= room - reserve:
        text += "\n" + collapsed
    else:
        text += (
            f"\n_Operator grid ({len(grid_rows)} operators × {len(cells)} cells) left out to fit a PR "
            "comment: see scorecard.json._\n"
        )
    if fail_lines:
        kept = _lines_within(fail_lines, limit - len(text.encode()) - 300)
        more = len(fail_lines) - len(kept)
        text += f"\n<details><summary>Failing cases ({len(fail_lines)})</summary>\n\n" + "\n".join(kept)
        text += (f"\n- … {more} more in scorecard.json\n" if more else "\n") + "\n</details>\n"
    if len(text.encode()) > limit:  # cannot happen with the budgets above; the limit is a promise
        text = (
            "\n".join(sections)
            + "\n_Operator grid and failure list omitted to fit a PR comment: see scorecard.json._\n"
        )
    if len(text.encode()) > limit:
        text = "\n".join(
            [*head, verdict, "", "_Details omitted to fit a PR comment: see scorecard.json._", ""]
        )
    return text


# Characters XML 1.0 cannot carry at all (a NUL or a terminal escape in an error message would make the
# whole junit.xml unreadable to CI test reporters).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: Any) -> str:
    return _NOT_XML.sub("\ufffd", _ANSI.sub("", str(text)))


def render_junit(rows: list[dict[str, Any]]) -> str:
    latest = list(latest_by_id(rows).values())
    suites = ET.Element("testsuites", name="flagos-portability")
    by_cell: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in latest:
        if r.get("kind") in ("op", "serving", "cell"):
            by_cell[r["cell"]].append(r)
    for cell, rs in sorted(by_cell.items()):
        counts = Counter(r["status"] for r in rs if r.get("kind") != "cell" or r["status"] != "pass")
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=_xml(cell),
            tests=str(sum(counts.values())),
            failures=str(counts.get("fail", 0)),
            errors=str(sum(counts.get(s, 0) for s in ("error", "timeout", "crash", "oom"))),
            skipped=str(sum(counts.get(s, 0) for s in ("skip", "unsupported", "unavailable", "infra"))),
        )
        for r in rs:
            if r.get("kind") == "cell" and r["status"] == "pass":
                continue
            name = _xml(r["id"].split("::", 1)[-1] if r.get("kind") == "op" else r["id"])
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_xml(cell),
                name=name,
                time=f"{(r.get('latency_ms') or 0) / 1e3:.6f}",
            )
            status, reason = r["status"], _xml(r.get("reason") or "")
            if status == "fail":
                ET.SubElement(case, "failure", message=reason[:500], type="fail").text = reason
            elif status in ("error", "timeout", "crash", "oom"):
                ET.SubElement(case, "error", message=reason[:500], type=status).text = reason
            elif status in ("skip", "unsupported", "unavailable", "infra"):
                ET.SubElement(case, "skipped", message=f"{status}: {reason}"[:500])
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def write_scorecard(results: Path, out: Path | None = None) -> dict[str, Path]:
    """Write scorecard.md / scorecard.json / junit.xml next to (or into `out`) the results file."""
    results = Path(results)
    run_dir = results if results.is_dir() else results.parent
    out = Path(out) if out else run_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = read_results(results)
    plan_file = run_dir / "plan.json"
    planned = json.loads(plan_file.read_text())["cases"] if plan_file.exists() else None
    data = summarize(rows, planned)
    if (run_dir / "coverage.json").exists():
        data["coverage"] = json.loads((run_dir / "coverage.json").read_text())
    run = json.loads((run_dir / "run.json").read_text()) if (run_dir / "run.json").exists() else None
    paths = {"markdown": out / "scorecard.md", "json": out / "scorecard.json", "junit": out / "junit.xml"}
    paths["markdown"].write_text(render_markdown(data, run))
    paths["json"].write_text(
        json.dumps(
            {"run": run, "statuses": STATUSES, **data, "results": list(latest_by_id(rows).values())},
            indent=1,
            default=str,
        )
    )
    paths["junit"].write_text(render_junit(rows))
    return paths
