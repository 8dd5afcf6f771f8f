"""Scorecard: results.jsonl -> scorecard.md (PR comment), scorecard.json, junit.xml.

`write_scorecard` reads a run's results (with its plan.json, run.json and coverage.json where present) and
writes all three; the summary comes from `scorecard.summary`, the Markdown from `scorecard.markdown`, the
JSON and the JUnit XML from here. The names other modules use are re-exported from this one.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from portability.results.store import STATUSES, latest_by_id, read_results
from portability.scorecard.markdown import LEGEND, MARKER, MAX_COMMENT_BYTES, SYMBOL, render_markdown
from portability.scorecard.safe_text import MAX_MESSAGE_CHARS, ZWSP, md_text, xml_text
from portability.scorecard.summary import summarize

__all__ = [
    "LEGEND",
    "MARKER",
    "MAX_COMMENT_BYTES",
    "MAX_MESSAGE_CHARS",
    "SYMBOL",
    "ZWSP",
    "md_text",
    "render_junit",
    "render_markdown",
    "summarize",
    "write_scorecard",
]


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
            name=xml_text(cell),
            tests=str(sum(counts.values())),
            failures=str(counts.get("fail", 0)),
            errors=str(sum(counts.get(s, 0) for s in ("error", "timeout", "crash", "oom"))),
            skipped=str(sum(counts.get(s, 0) for s in ("skip", "unsupported", "unavailable", "infra"))),
        )
        for r in rs:
            if r.get("kind") == "cell" and r["status"] == "pass":
                continue
            name = xml_text(r["id"].split("::", 1)[-1] if r.get("kind") == "op" else r["id"])
            case = ET.SubElement(
                suite,
                "testcase",
                classname=xml_text(cell),
                name=name,
                time=f"{(r.get('latency_ms') or 0) / 1e3:.6f}",
            )
            status, reason = r["status"], xml_text(r.get("reason") or "")
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
    if (run_dir / "declared-support.json").exists():
        data["declared_support"] = json.loads((run_dir / "declared-support.json").read_text())
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
