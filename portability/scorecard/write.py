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

from portability.plan.case_id import case_key
from portability.results.rundir import RunDir
from portability.results.status import STATUSES, junit_element
from portability.results.store import latest_by_id, planned_cases, read_results, warn_skipped
from portability.scorecard.markdown import MARKER, MAX_COMMENT_BYTES, render_markdown
from portability.scorecard.safe_text import MAX_MESSAGE_CHARS, ZWSP, json_safe, md_text, xml_text
from portability.scorecard.summary import summarize

__all__ = [
    "MARKER",
    "MAX_COMMENT_BYTES",
    "MAX_MESSAGE_CHARS",
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
            failures=str(sum(n for s, n in counts.items() if junit_element(s) == "failure")),
            errors=str(sum(n for s, n in counts.items() if junit_element(s) == "error")),
            skipped=str(sum(n for s, n in counts.items() if junit_element(s) == "skipped")),
        )
        for r in rs:
            if r.get("kind") == "cell" and r["status"] == "pass":
                continue
            name = xml_text(case_key(r["id"], r["cell"]) if r.get("kind") == "op" else r["id"])
            case = ET.SubElement(
                suite,
                "testcase",
                classname=xml_text(cell),
                name=name,
                time=f"{(r.get('latency_ms') or 0) / 1e3:.6f}",
            )
            status, reason = r["status"], xml_text(r.get("reason") or "")
            element = junit_element(status)
            if element in ("failure", "error"):
                ET.SubElement(case, element, message=reason[:500], type=status).text = reason
            elif element == "skipped":
                ET.SubElement(case, "skipped", message=f"{status}: {reason}"[:500])
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def write_scorecard(results: Path, out: Path | None = None) -> dict[str, Path]:
    """Write scorecard.md / scorecard.json / junit.xml next to (or into `out`) the results file."""
    results = Path(results)
    run_dir = RunDir.of(results)
    paths = run_dir.outputs(out)
    paths["markdown"].parent.mkdir(parents=True, exist_ok=True)
    planned, fingerprint = planned_cases(run_dir.read_json(run_dir.plan), run_dir.plan)
    rows = read_results(results, fingerprint)  # rows of another plan are skipped, and said
    data = summarize(rows, planned)
    coverage = run_dir.read_json(run_dir.coverage)
    if coverage is not None and _coverage_ok(coverage, run_dir.coverage):
        data["coverage"] = coverage
    declared = run_dir.read_json(run_dir.declared_support)
    if declared is not None:
        data["declared_support"] = declared
    run = run_dir.read_json(run_dir.run_info)
    if run and run.get("interrupted"):
        data["interrupted"] = str(run.get("signal") or "a signal")
    paths["markdown"].write_text(render_markdown(data, run))
    paths["json"].write_text(
        json.dumps(
            json_safe(
                {"run": run, "statuses": STATUSES, **data, "results": list(latest_by_id(rows).values())}
            ),
            indent=1,
            default=str,
        )
    )
    paths["junit"].write_text(render_junit(rows))
    return paths


def _coverage_ok(coverage: dict[str, Any], path: Path) -> bool:
    """coverage.json has what the scorecard reads; otherwise it is left out, and said."""
    ok = (
        isinstance(coverage.get("uncovered"), list)
        and all(isinstance(x, str) for x in coverage["uncovered"])
        and all(isinstance(coverage.get(k), int) for k in ("covered", "registered"))
        and isinstance(coverage.get("broken_specs") or {}, dict)
    )
    if not ok:
        warn_skipped(path, [f"{path}: not a coverage file ('covered', 'registered', 'uncovered')"])
    return ok
