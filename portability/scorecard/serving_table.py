"""The serving rows of a scorecard as one Markdown table (engine × backend cell), plus one line naming
the cells this host could not serve."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from portability.scorecard.safe_text import md_text


def render_serving_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of serving rows (one per engine × cell)."""

    def num(value: Any, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""

    def pair(r: dict[str, Any], metric: str) -> str:
        a, b = num(r.get(f"{metric}_ms_p50"), ".1f"), num(r.get(f"{metric}_ms_p99"), ".1f")
        return f"{a} / {b}" if a or b else ""

    table = []
    served = [r for r in rows if r.get("status") != "unavailable"]
    unavailable = [r for r in rows if r.get("status") == "unavailable"]
    for r in sorted(served, key=lambda r: str(r.get("id"))):
        gate = r.get("gate") or {}
        ratio = num(r.get("ratio_vs_native"), ".2f")
        verdict_text = gate.get("verdict") or r.get("status", "")
        if gate:
            verdict_text += (
                f" (Δ {num(gate.get('max_abs_logprob_diff'), '.1e')}, KL {num(gate.get('mean_kl'), '.1e')},"
                f" greedy {num(gate.get('greedy_agreement'), '.0%')})"
            )
        engine = (r.get("engine") or "") + (" (CUDA graphs)" if r.get("cuda_graphs") else "")
        left_off = r.get("flaggems_exclude") or []
        cell = (r.get("cell") or "") + (f" without {', '.join(left_off)}" if left_off else "")
        table.append(
            [
                md_text(engine, 40),
                md_text(cell, 80),
                md_text(r.get("model") or "", 30),
                md_text(r.get("weights") or "", 30),
                num(r.get("output_tok_s"), ".1f"),
                num(r.get("startup_s"), ".0f"),
                num(r.get("warmup_s"), ".0f"),
                pair(r, "ttft"),
                pair(r, "tpot"),
                pair(r, "itl"),
                f"{ratio}x" if ratio else "",
                md_text(verdict_text, 80),
                md_text(", ".join(r.get("culprits") or []), 120),
                md_text(r.get("reason") or "", 160),
            ]
        )
    return tabulate(
        table,
        headers=[
            "engine",
            "cell",
            "model",
            "weights",
            "output tok/s",
            "start-up s",
            "warm-up s",
            "TTFT ms p50 / p99",
            "TPOT ms p50 / p99",
            "ITL ms p50 / p99",
            "vs native",
            "gate",
            "culprits",
            "reason",
        ],
        tablefmt="github",
        disable_numparse=True,
    ) + _unavailable_line(unavailable)


def _unavailable_line(rows: list[dict[str, Any]]) -> str:
    """Cells not served on this host, one line grouped by reason (a row each would bury the table)."""
    by_reason: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: str(r.get("id"))):
        by_reason.setdefault(r.get("reason") or "", []).append(f"{r.get('engine')} on {r.get('cell')}")
    if not by_reason:
        return ""
    parts = [f"{', '.join(where)} ({reason})" for reason, where in by_reason.items()]
    return "\n\n" + md_text("Not served on this host: " + "; ".join(parts), 4000)
