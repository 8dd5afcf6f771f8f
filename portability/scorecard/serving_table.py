"""The serving rows of a scorecard as one Markdown table (engine × backend cell), one line naming the
cells this host could not serve, and per flaggems cell with a step profile the operators that account
for its gap to the torch cell ("where the time goes")."""

from __future__ import annotations

from typing import Any

from tabulate import tabulate

from portability.scorecard.safe_text import md_text


def num(value: Any, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def _throughput_gate(r: dict[str, Any]) -> str:
    gate = r.get("throughput_gate") or {}
    if not gate:
        return ""
    limit = f"{num(gate.get('min_ratio'), '.2f')}x"
    if gate.get("verdict") == "not checked":
        return f"not checked (no torch tok/s; limit {limit})"
    sign = "≥" if gate.get("verdict") == "pass" else "<"
    return f"{gate.get('verdict')} ({num(gate.get('ratio'), '.2f')}x {sign} {limit})"


def _cell_label(r: dict[str, Any]) -> str:
    left_off = r.get("flaggems_exclude") or []
    return (r.get("cell") or "") + (f" without {', '.join(left_off)}" if left_off else "")


def _engine_label(r: dict[str, Any]) -> str:
    engine = (r.get("engine") or "") + (" (CUDA graphs)" if r.get("cuda_graphs") else "")
    if (r.get("tensor_parallel_size") or 1) > 1:
        engine += f" TP {r['tensor_parallel_size']}"
    pair = r.get("pair") or {}
    if pair.get("text"):
        engine += f": {pair['text']}" + (
            " — MISMATCHED pair, served on request" if pair.get("mismatched") else ""
        )
    return engine


def render_serving_table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of serving rows (one per engine × cell)."""

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
        engine = _engine_label(r)
        cell = _cell_label(r)
        table.append(
            [
                md_text(engine, 200),
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
                md_text(_throughput_gate(r), 60),
                md_text(", ".join(r.get("culprits") or []), 120),
                md_text(r.get("reason") or "", 160),
            ]
        )
    return (
        tabulate(
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
                "logprob gate",
                "throughput gate",
                "culprits",
                "reason",
            ],
            tablefmt="github",
            disable_numparse=True,
        )
        + _unavailable_line(unavailable)
        + _time_gap_table(served)
    )


def _unavailable_line(rows: list[dict[str, Any]]) -> str:
    """Cells not served on this host, one line grouped by reason (a row each would bury the table)."""
    by_reason: dict[str, list[str]] = {}
    for r in sorted(rows, key=lambda r: str(r.get("id"))):
        by_reason.setdefault(r.get("reason") or "", []).append(f"{r.get('engine')} on {r.get('cell')}")
    if not by_reason:
        return ""
    parts = [f"{', '.join(where)} ({reason})" for reason, where in by_reason.items()]
    return "\n\n" + md_text("Not served on this host: " + "; ".join(parts), 4000)


def _time_gap_table(rows: list[dict[str, Any]]) -> str:
    """Per flaggems cell with a gap attribution: per phase, the step times and the operators adding the most
    (ms per step added, share of the gap, calls per step torch -> flaggems, the FlagGems functions)."""
    table = []
    for r in sorted(rows, key=lambda r: str(r.get("id"))):
        for phase, g in (r.get("time_gap") or {}).items():
            where = md_text(f"{_engine_label(r)} {_cell_label(r)}", 200)
            steps = f"{num(g.get('torch_step_ms'), '.2f')} → {num(g.get('step_ms'), '.2f')}"
            for op in g.get("ops") or [{"op": "(no gap: as fast as torch)"}]:
                share = num(op.get("share"), ".0%")
                calls = (
                    f"{num(op.get('torch_calls'), '.0f')} → {num(op.get('calls'), '.0f')}"
                    if "calls" in op
                    else ""
                )
                table.append(
                    [
                        where,
                        phase,
                        steps,
                        num(g.get("gap_ms"), "+.2f"),
                        md_text(op.get("op") or "", 60),
                        num(op.get("added_ms"), "+.2f"),
                        share,
                        calls,
                        md_text(", ".join(op.get("flaggems") or []), 160),
                    ]
                )
    if not table:
        return ""
    headers = [
        "cell",
        "step",
        "torch → this ms/step",
        "gap ms",
        "operator",
        "ms/step added",
        "share of gap",
        "calls/step",
        "FlagGems functions",
    ]
    grid = tabulate(table, headers=headers, tablefmt="github", disable_numparse=True)
    return (
        "\n\nWhere the time goes (steady-state steps profiled after warm-up, vs the torch cell):\n\n" + grid
    )
