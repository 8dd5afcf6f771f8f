"""scorecard.md: the scorecard as a pull-request comment. Every piece of text that came from a run goes
through `md_text`, and the whole comment is kept under 64 KB: the summary always stays, the grid and
failure details collapse or shrink first."""

from __future__ import annotations

from collections import Counter
from typing import Any

from tabulate import tabulate

from portability.results.status import FAILING, NEUTRAL, SYMBOL, legend
from portability.scorecard import native_fails as native_check
from portability.scorecard.flaggems_section import declared_support, under_test
from portability.scorecard.safe_text import md_code, md_text
from portability.scorecard.serving_table import render_serving_table

MAX_COMMENT_BYTES = 64 * 1024
MARKER = "<!-- flagos-portability-scorecard -->"


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


CELL_HEADERS = [
    "cell",
    "device",
    "state",
    "pass",
    "failing",
    "skipped",
    "ops passing",
    "geomean speedup",
    "faster than native",
]


def render_markdown(
    data: dict[str, Any], run: dict[str, Any] | None = None, limit: int = MAX_COMMENT_BYTES
) -> str:
    """The PR comment, at most `limit` bytes (UTF-8). What gives way, in order: the failure list (cut, with
    a count), the operator grid (collapsed into <details>, then left out), the coverage list, the cells
    table (whole rows, with a count). The title, the verdict line and the cells table's head always stay."""
    head = _header(run)
    flaggems = under_test(data)
    if flaggems:
        head += [flaggems, ""]
    verdict = verdict_line(data)
    head_bytes = len("\n".join([*head, verdict, "", "### Cells", ""]).encode())
    cells_table = _fit_table(
        [_cell_row(c) for c in data["cells"]], CELL_HEADERS, max(2_000, limit // 2 - head_bytes), "cells"
    )
    sections = [*head, verdict, "", "### Cells", "", cells_table, ""]
    sections += _perf_section(data, limit)
    sections += _native_section(data, limit) + _serving_section(data, limit) + _coverage_section(data, limit)
    sections += declared_support(data, limit // 8)
    text = _with_grid_and_failures("\n".join(sections), data, limit)
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


def _header(run: dict[str, Any] | None) -> list[str]:
    head = [MARKER, "## FlagOS portability scorecard", ""]
    if run:
        head.append(
            f"Host {md_text(run.get('host'), 60)} · {md_text(run.get('platform'), 80)} · "
            f"wall {md_text(run.get('wall_s', '?'), 20)} s · {md_text(run.get('command'), 200)}"
        )
        head.append("")
    return head


def _cell_row(c: dict[str, Any]) -> list[Any]:
    """One line of the cells table: the counts of a cell that ran, or why it did not."""
    if c["state"] in ("unavailable", "error", "infra"):  # infra: no shard arrived (ci/merge.py)
        reason = f"{c['state']}: {md_text(c['reason'])}"
        return [md_text(c["cell"], 60), md_text(c["device_name"] or "—", 40), reason, *[""] * 6]
    counts = c["counts"]
    bad = {s: counts.get(s, 0) for s in FAILING if counts.get(s)}
    other = {s: counts.get(s, 0) for s in NEUTRAL if counts.get(s)}
    gm = c["geomean_speedup"]
    ftn = c["faster_than_native"]
    if c.get("not_run"):
        other["not run"] = c["not_run"]
    return [
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


def verdict_line(data: dict[str, Any]) -> str:
    """The scorecard's first claim, never more than was checked: "all pass" only when every planned case
    of every available cell passed; otherwise every non-pass status is counted (failing cases, cases that
    fell back to native torch, were unsupported, skipped, infra or never run) and every cell that could
    not start is named. Unavailable cells (this host cannot run them) are reported, not counted."""
    tally = verdict_counts(data)
    if tally["planned"] == 0 and not tally["dead"]:
        verdict = "**No operator case in this run.**"
    elif tally["all_pass"]:
        verdict = f"**All {tally['planned']} planned case(s) of {tally['ran']} available cell(s) pass.**"
    else:
        parts = [f"**{tally['failing']} failing case(s).**"] if tally["failing"] else []
        other = tally["not_passing"]
        if other:
            words = ", ".join(f"{n} {_NOT_PASSING_WORDS.get(s, s)}" for s, n in other.items())
            parts.append(f"**{sum(other.values())} other case(s) did not pass:** {words}.")
        if tally["dead"]:
            names = ", ".join(md_text(c, 60) for c in tally["dead"])
            parts.append(f"**{len(tally['dead'])} cell(s) could not start:** {names} (reasons in the table).")
        verdict = " ".join(parts)
    bad_serving = [r for r in data.get("serving", []) if r.get("status") in FAILING]
    if bad_serving:
        verdict += f" **{len(bad_serving)} Qwen3 serving row(s) fail** (table below)."
    cells_not_run = [c["cell"] for c in data["cells"] if c["state"] == "infra"]
    if cells_not_run:
        verdict += f" **{len(cells_not_run)} cell(s) not run** ({md_text(', '.join(cells_not_run), 200)})."
    if data.get("not_run"):
        verdict += (
            f" **{data['not_run']} planned case(s) were not run** (the run was cut short; "
            "`portability run --resume` finishes it)."
        )
    short = [
        f"{md_text(c['cell'], 60)} {c['own_code']['exercised']} of {c['own_code']['declared']}"
        for c in data["cells"]
        if c.get("own_code") and c["own_code"]["exercised"] < c["own_code"]["declared"]
    ]
    if short:
        verdict += f" Declared operators whose own code ran: {', '.join(short)}."
    if tally["unavailable"]:
        verdict += f" {tally['unavailable']} cell(s) unavailable on this host (reasons in the table)."
    if data.get("interrupted"):  # run.json says a signal stopped the run: never read as a finished run
        verdict += f" **The run was interrupted ({md_text(data['interrupted'], 20)}).**"
    return verdict


_NOT_PASSING_WORDS = {"fallback": "fallback (ran native torch, not the backend's own code)"}


def verdict_counts(data: dict[str, Any]) -> dict[str, Any]:
    """What the verdict line (and `portability run`'s exit code) is made of, from `summarize`'s data."""
    cells = data["cells"]
    dead = [c["cell"] for c in cells if c["state"] == "error"]
    ran = [c for c in cells if c["state"] not in ("unavailable", "error")]
    counts: Counter[str] = Counter()
    for c in ran:
        counts.update(c["counts"])
    not_passing = {s: n for s, n in counts.items() if n and s != "pass" and s not in FAILING}
    not_run = data.get("not_run", 0)
    if not_run:
        not_passing["not run"] = not_run
    failing = sum(n for s, n in counts.items() if s in FAILING)
    planned = sum(counts.values()) + not_run
    return {
        "counts": dict(counts),
        "planned": planned,
        "ran": len(ran),
        "failing": failing,
        "not_passing": not_passing,
        "dead": dead,
        "unavailable": sum(1 for c in cells if c["state"] == "unavailable"),
        "all_pass": planned > 0 and counts["pass"] == planned and not dead,
    }


def _native_section(data: dict[str, Any], limit: int) -> list[str]:
    native = [
        native_check.summary_line(c["cell"], c["native_check"], md_code)
        for c in data["cells"]
        if c.get("native_check")
    ]
    if not native:
        return []
    kept = _lines_within(native, limit // 16)  # one line per cell, at most a sixteenth of the comment
    more = len(native) - len(kept)
    return [*kept, *([f"- … {more} more cells in scorecard.json"] if more else []), ""]


def _serving_section(data: dict[str, Any], limit: int) -> list[str]:
    if not data.get("serving"):
        return []
    table = render_serving_table(data["serving"])
    if len(table.encode()) > limit // 8:
        table = f"_{len(data['serving'])} serving rows: too many for a PR comment, see scorecard.json._"
    return ["### Qwen3 serving (engine × backend cell)", "", table, ""]


def _coverage_section(data: dict[str, Any], limit: int) -> list[str]:
    cov = data.get("coverage")
    if not cov:
        return []
    cap = 20_000
    uncovered = md_text(", ".join(cov["uncovered"]), cap=cap)
    while len(uncovered.encode()) > limit // 8:  # escaping can grow text up to 6x: measure the bytes
        cap //= 2
        uncovered = md_text(", ".join(cov["uncovered"]), cap=cap)
    return [
        f"FlagGems coverage: the catalog exercises **{cov['covered']}/{cov['registered']}** aten "
        f"overloads FlagGems registers ({_registry_words(cov)}; measured by dispatch, see "
        "`portability coverage`)." + _broken_words(cov) + _derived_words(cov),
        "",
        f"<details><summary>{len(cov['uncovered'])} uncovered overloads</summary>\n\n"
        + uncovered
        + "\n\n</details>",
        "",
    ]


def _derived_words(cov: dict[str, Any]) -> str:
    """How many aten specs were derived from OpInfo for this FlagGems (coverage.json of runs before this
    field: nothing), and how many of its fused functions have specs."""
    words = ""
    if "opinfo_derived_specs" in cov:
        derived = len(cov["opinfo_derived_specs"])
        words += f" {derived} aten specs were derived from OpInfo ({md_text(cov.get('opinfo_table'), 80)})."
    if cov.get("fused_functions"):
        have, of = cov["fused_functions_with_specs"], cov["fused_functions"]
        words += f" Fused functions with specs: {have} of {of}."
    return words


def _failure_line(r: dict[str, Any]) -> str:
    error_size = (
        f" (max abs err {r['max_abs_err']:.3g}, tol atol={r.get('atol'):g} rtol={r.get('rtol'):g})"
        if isinstance(r.get("max_abs_err"), (int, float))
        and isinstance(r.get("atol"), (int, float))
        and isinstance(r.get("rtol"), (int, float))
        and r["status"] == "fail"
        else ""
    )
    return (
        f"- {md_code(r['cell'], 60)} {md_text(r['op'], 60)} [{md_text(r['case'], 60)}] "
        f"{md_text(r['dtype'], 10)}: **{md_text(r['status'], 12)}**"
        + (f" ({native_check.TAG})" if r.get(native_check.FIELD) else "")
        + f" — {md_text(r.get('reason'))}"
        + error_size
    )


def _with_grid_and_failures(text: str, data: dict[str, Any], limit: int) -> str:
    """`text` with the operator grid (whole, collapsed or left out) and the failure list, within `limit`."""
    cells = [c["cell"] for c in data["cells"] if c["state"] not in ("unavailable", "error") and c["cases"]]
    grid_rows = [
        [md_text(op, 60)] + [_grid_entry(data["grid"][op].get(cell)) for cell in cells]
        for op in sorted(data["grid"])
    ]
    grid = tabulate(grid_rows, headers=["operator", *[md_text(c, 40) for c in cells]], tablefmt="github")
    fail_lines = [_failure_line(r) for r in data["failures"]]
    grid_block = f"### Operators × cells\n\n{legend()}\n\n{grid}\n"
    collapsed = (
        f"<details><summary>Operators × cells ({len(grid_rows)} operators)</summary>\n\n"
        f"{legend()}\n\n{grid}\n\n</details>\n"
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
    return text


def _broken_words(cov: dict) -> str:
    """A count that is low because specs could not be built on the measuring host (a missing package,
    say) is a harness problem, not a coverage gap: say so beside the count."""
    broken = cov.get("broken_specs") or {}
    if not broken:
        return ""
    name, why = next(iter(broken.items()))
    return " " + md_text(
        f"{len(broken)} specs could not be built on the host that measured it and cover nothing"
        f" (e.g. {name}: {why}).",
        cap=400,
    )


def _registry_words(cov: dict) -> str:
    """Where the registered overloads were read (coverage.json of runs before this field: the table)."""
    if cov.get("registry") == "live":
        return md_text(f"live registry, {cov.get('registry_note', '')}".rstrip(", "))
    return "the installed package's table"


PERF_HEADERS = [
    "cell",
    "cache",
    "geomean call / device",
    "fast_0.8",
    "fast_1.0",
    "fast_1.5",
    "roofline p10 / median / p90",
    "≥ 50 % of roof",
    "CV median",
]


def _pct(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "–"


def _both(figures: dict[str, Any], p: str) -> str:
    """fast_p in call-time / device-time mode."""
    fast = figures["fast_p"]
    return f"{_pct(fast['latency'][p])} / {_pct(fast['device'][p])}"


def _perf_row(cell: dict[str, Any], baseline: str) -> list[str]:
    f = cell["perf"]
    native = cell["backend"] == baseline  # its speedups are 1 by definition: only its roofline says much
    gm_l, gm_d = f["geomean_latency_speedup"], f["geomean_device_speedup"]
    q = f["roofline"]["quantiles"]
    noise = f.get("noise") or {}
    return [
        md_text(cell["cell"], 60),
        ", ".join(f"{k} {v}" for k, v in sorted(f["cache"].items())) or "–",
        "native" if native else f"{f'{gm_l:.2f}x' if gm_l else '–'} / {f'{gm_d:.2f}x' if gm_d else '–'}",
        *(["–"] * 3 if native else [_both(f, "0.8"), _both(f, "1"), _both(f, "1.5")]),
        f"{q['p10']:.0f} / {q['median']:.0f} / {q['p90']:.0f} %" if q else "–",
        _pct(f["roofline"]["within_50pct"]),
        _pct(noise.get("median_cv")) if noise else "–",
    ]


def _perf_section(data: dict[str, Any], limit: int) -> list[str]:
    """Both timing modes, fast_p, the roofline and the noise per cell; the operators without a work model
    and the per-operator median roofline_pct, collapsed (at most an eighth of the comment)."""
    from portability.perf.figures import NONTRIVIAL_MS
    from portability.registry import baseline_name

    cells = [c for c in data["cells"] if c.get("perf") and c["perf"]["timed"]]
    if not cells:
        return []
    lines = [
        "### Performance: call time and device time",
        "",
        "_Call time_ (`latency_ms`): one call as an eager caller sees it, host dispatch (Python included) "
        "and device work. _Device time_ (`device_ms`): the device's execution of the call only (profiler "
        "device activity; on the CPU the aten operators' self time). Geomeans over passing cases with at "
        f"least {NONTRIVIAL_MS * 1e3:g} µs of native device time; fast_p: share of the cases run that are "
        "correct and at least p× native (call / device); roofline_pct: the bound of the case's work model "
        "on the measured peaks over its device time.",
        "",
        tabulate([_perf_row(c, baseline_name()) for c in cells], headers=PERF_HEADERS, tablefmt="github"),
        "",
    ]
    details: list[str] = []
    for c in cells:
        roof = c["perf"]["roofline"]
        if roof["no_work_model"]:
            details.append(
                f"- {md_code(c['cell'], 60)} operators without a work model (no roofline): "
                + md_text(", ".join(roof["no_work_model"]), cap=2_000)
            )
        if roof["by_op"]:
            per_op = ", ".join(f"{op} {v:.0f} %" for op, v in roof["by_op"].items())
            cell = md_text(c["cell"], 60)
            details.append(f"- `{cell}` median roofline_pct per operator: {md_text(per_op, cap=8_000)}")
        multi = c["perf"].get("multi_kernel_ops") or {}
        if multi:
            text = ", ".join(f"{op} {k:g}" for op, k in multi.items())
            details.append(f"- {md_code(c['cell'], 60)} kernels per call above 1: {md_text(text)}")
    if details:
        kept = _lines_within(details, limit // 8)
        more = len(details) - len(kept)
        lines += [
            "<details><summary>Roofline per operator, operators without a work model</summary>",
            "",
            *kept,
            *([f"- … {more} more lines in scorecard.json"] if more else []),
            "",
            "</details>",
            "",
        ]
    return lines
