"""History and pictures: a trend file of run summaries, and a self-contained HTML report.

The report embeds its images as data: URIs (a heatmap of operator × cell, colour = speedup vs torch,
marks = status; and the trend of pass counts), so the single file can be attached to a CI run or mailed.
Plots use matplotlib (the optional `report` extra).
"""

from __future__ import annotations

import base64
import io
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from portability.results.rundir import RunDir
from portability.results.status import PLOT_MARK, SYMBOL
from portability.results.store import planned_cases, read_results
from portability.scorecard.safe_text import html_text, plot_text
from portability.scorecard.summary import summarize


def append_trend(run_dir: Path, trend: Path) -> dict[str, Any]:
    """Append one line summarising the run in `run_dir` to `trend`; return it."""
    data = summarize(read_results(run_dir))
    run = RunDir(run_dir).read_json(RunDir(run_dir).run_info) or {}
    line = {
        "time": run.get("finished", time.time()),
        "run": str(run_dir),
        "host": run.get("host"),
        "cells": {
            c["cell"]: {
                "pass": c["counts"].get("pass", 0),
                "cases": c["cases"],
                "geomean_speedup": c["geomean_speedup"],
            }
            for c in data["cells"]
            if c["cases"]
        },
        "failing": len(data["failures"]),
    }
    trend.parent.mkdir(parents=True, exist_ok=True)
    with trend.open("a") as fh:
        fh.write(json.dumps(line) + "\n")
    return line


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def heatmap(data: dict[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ops = sorted(data["grid"])
    cells = sorted({c for op in ops for c in data["grid"][op]})
    values = np.full((len(ops), len(cells)), np.nan)
    for i, op in enumerate(ops):
        for j, cell in enumerate(cells):
            entry = data["grid"][op].get(cell)
            if entry and entry["verdict"] == "pass" and entry["geomean_speedup"]:
                values[i, j] = math.log2(entry["geomean_speedup"])
    fig, ax = plt.subplots(figsize=(2 + 1.1 * len(cells), 1 + 0.22 * len(ops)))
    image = ax.imshow(values, cmap="RdYlGn", vmin=-3, vmax=3, aspect="auto")
    for i, op in enumerate(ops):
        for j, cell in enumerate(cells):
            entry = data["grid"][op].get(cell)
            if entry and entry["verdict"] != "pass":
                ax.text(
                    j,
                    i,
                    PLOT_MARK.get(entry["verdict"], "?") if entry["cases"] else ".",
                    ha="center",
                    va="center",
                    fontsize=7,
                )
    plain = {"parse_math": False}  # names are data, never mathtext
    ax.set_xticks(
        range(len(cells)), [plot_text(c) for c in cells], rotation=30, ha="right", fontsize=8, **plain
    )
    ax.set_yticks(range(len(ops)), [plot_text(op) for op in ops], fontsize=7, **plain)
    fig.colorbar(image, ax=ax, label="log2 speedup vs torch (passing cases)")
    ax.set_title("operators × cells (X fail, E error, T timeout, C crash, U unsupported, . not run)")
    uri = _png(fig)
    plt.close(fig)
    return uri


def read_trend(trend: Path) -> list[dict[str, Any]]:
    """The trend file's run summaries. A line that is not one (not JSON, not an object, `cells` not a
    mapping of cell -> {"pass": number}) is skipped, counted once on stderr with the first `FILE:LINE`,
    as results.jsonl's bad rows are: a damaged history never stops a report."""
    good: list[dict[str, Any]] = []
    bad: list[str] = []
    raw = trend.read_bytes().decode("utf-8", errors="replace")
    for number, text in enumerate(raw.splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError:
            line = None
        cells = line.get("cells") if isinstance(line, dict) else None
        if isinstance(cells, dict) and all(
            isinstance(v, dict) and isinstance(v.get("pass"), (int, float)) for v in cells.values()
        ):
            good.append(line)
        else:
            bad.append(f"{trend}:{number}")
    if bad:
        sys.stderr.write(
            f"portability: {len(bad)} line(s) of the trend file skipped, not run summaries ({bad[0]})\n"
        )
    return good


def trend_plot(lines: list[dict[str, Any]]) -> str | None:
    if len(lines) < 1:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 2.6))
    cells = sorted({c for line in lines for c in line["cells"]})
    for cell in cells:
        points = [(i, line["cells"][cell]["pass"]) for i, line in enumerate(lines) if cell in line["cells"]]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=plot_text(cell))
    ax.set_xlabel("run")
    ax.set_ylabel("passing cases")
    for text in ax.legend(fontsize=7).get_texts():
        text.set_parse_math(False)  # cell names are data, never mathtext
    uri = _png(fig)
    plt.close(fig)
    return uri


def write_report(run_dir: Path, out: Path, trend: Path | None = None) -> Path:
    plan_file = RunDir(run_dir).plan
    planned, fingerprint = planned_cases(RunDir(run_dir).read_json(plan_file), plan_file)
    data = summarize(read_results(run_dir, fingerprint), planned)
    esc = html_text
    rows = ""
    for c in data["cells"]:
        speed = f"{c['geomean_speedup']:.2f}x" if c["geomean_speedup"] else ""
        rows += (
            f"<tr><td>{esc(c['cell'])}</td><td>{esc(c['device_name'] or '')}</td><td>{esc(c['state'])}</td>"
            f"<td>{c['counts'].get('pass', 0)}</td><td>{c['cases']}</td><td>{speed}</td>"
            f"<td>{esc(c['reason'] or '')}</td></tr>"
        )
    cells = sorted({c for op in data["grid"] for c in data["grid"][op]})
    grid_rows = ""
    for op in sorted(data["grid"]):
        tds = ""
        for cell in cells:
            entry = data["grid"][op].get(cell)
            text = ""
            if entry and not entry["cases"]:
                text = f"not run {entry.get('not_run', '')}"
            elif entry:
                text = SYMBOL[entry["verdict"]]
                if entry["verdict"] == "pass" and entry["geomean_speedup"]:
                    text += f" {entry['geomean_speedup']:.2f}x"
            tds += f'<td class="{esc(entry["verdict"]) if entry else ""}">{esc(text)}</td>'
        grid_rows += f"<tr><th>{esc(op)}</th>{tds}</tr>"
    lines = []
    if trend and trend.exists():
        lines = read_trend(trend)
    trend_uri = trend_plot(lines) if lines else None
    header = "".join(f"<th>{esc(c)}</th>" for c in cells)
    trend_html = (
        f'<img id="trend" alt="trend" src="{trend_uri}">' if trend_uri else "<p>no trend file yet</p>"
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>FlagOS portability report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;
padding:2px 6px;font-size:12px}}td.pass{{background:#e6f4e6}}
td.fail,td.crash,td.error,td.timeout{{background:#f8d7d7}}
</style></head><body><h1>FlagOS portability report</h1><p>{esc(str(run_dir))}</p>
<h2>Cells</h2><table id="cells"><tr><th>cell</th><th>device</th><th>state</th><th>pass</th><th>cases</th>
<th>geomean speedup</th><th>reason</th></tr>{rows}</table>
<h2>Heatmap</h2><img id="heatmap" alt="operator by cell heatmap" src="{heatmap(data)}">
<h2>Operators × cells</h2><table id="grid"><tr><th>operator</th>{header}</tr>
{grid_rows}</table>
<h2>Trend</h2>{trend_html}
</body></html>"""
    out.write_text(page)
    return out
