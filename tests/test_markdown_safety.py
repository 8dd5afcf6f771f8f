"""Untrusted text in the PR comment: error messages and names cannot break, inject, ping or bloat it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from portability.scorecard.write import MAX_COMMENT_BYTES, md_text, render_junit, render_markdown, summarize

HOSTILE = (
    "boom | `rm -rf` <script>alert(1)</script> @maintainers fixes #123 **bold** [x](http://evil) "
    "<!-- hide --> &#124; \x1b[31mred\x1b[0m \u202eevil\u202c zero\u200bwidth \x00nul ~~strike~~ _em_\nnext"
)
ALLOWED_TAGS = {"<details>", "</details>", "<summary>", "</summary>", "<!-- flagos-portability-scorecard -->"}


def unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


def assert_safe(md: str, limit: int = MAX_COMMENT_BYTES) -> None:
    assert len(md.encode()) <= limit
    tags = set(re.findall(r"<!--.*?-->|</?[A-Za-z][^>]*>", md))
    assert tags <= ALLOWED_TAGS, tags
    assert "@maintainers" not in md and "#123" not in md
    assert "<script>" not in md and "<!-- hide" not in md
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e]", md)
    # every table keeps its shape: each row has as many cell separators as its header
    block: list[str] = []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            assert all(unescaped_pipes(row) == unescaped_pipes(block[0]) for row in block), block[:3]
            block = []


def test_md_text_neutralises_tables_code_html_mentions_refs_controls_and_newlines():
    s = md_text(HOSTILE)
    assert "\n" not in s
    assert "|" not in s.replace("\\|", "")
    assert "`" not in s.replace("\\`", "")
    assert "<" not in s and "&lt;script&gt;" in s and "&amp;#\u200b124;" in s
    assert "@maintainers" not in s and "@\u200bmaintainers" in s
    assert "#123" not in s and "#\u200b123" in s
    assert "**" not in s.replace("\\*", "") and "~~" not in s.replace("\\~", "")
    assert "\x1b" not in s and "[31m" not in s and "\u202e" not in s and "\x00" not in s
    assert "zerowidth" in s  # invisible characters are dropped, the words stay
    assert len(md_text("x" * 10_000)) <= 240
    assert len(md_text("x" * 10_000_000, cap=100)) == 100  # and fast on huge input


def op(i: int, status: str, reason: str, cell: str = "c@cuda") -> dict:
    return {
        "id": f"{cell}::op{i}::case::fp32",
        "kind": "op",
        "cell": cell,
        "backend": cell.split("@")[0],
        "device": "cuda",
        "op": f"op{i} {HOSTILE}",
        "case": f"case {HOSTILE}",
        "dtype": "fp32",
        "status": status,
        "reason": reason,
        "max_abs_err": 0.5,
        "atol": 1e-5,
        "rtol": 1e-5,
    }


def test_comment_stays_under_64kb_and_keeps_the_summary_when_thousands_fail():
    rows = [op(i, "fail", HOSTILE * 50) for i in range(3000)]
    md = render_markdown(summarize(rows))
    assert_safe(md)
    assert "**3000 failing case(s).**" in md and "### Cells" in md
    assert "more in scorecard.json" in md


def test_small_comment_has_grid_inline_and_failures_collapsed():
    md = render_markdown(summarize([op(1, "fail", "bad value"), op(2, "pass", "")]))
    assert_safe(md)
    assert "### Operators × cells" in md
    assert "<details><summary>Failing cases (1)</summary>" in md


def test_hundreds_of_cells_with_long_reasons_are_cut_by_whole_rows():
    rows = [
        {
            "id": f"cell:b{i}@cuda:{i}",
            "kind": "cell",
            "cell": f"b{i}@cuda:{i}",
            "backend": f"b{i}",
            "device": f"cuda:{i}",
            "status": "unavailable",
            "reason": "&<>" * 400,  # escaping makes every character 4-5 bytes
        }
        for i in range(400)
    ]
    md = render_markdown(summarize([*rows, op(1, "crash", HOSTILE)]))
    assert_safe(md)
    assert "**1 failing case(s).**" in md and "more cells in scorecard.json" in md
    assert "Failing cases (1)" in md  # the failure list survives the cut of the cells table


def test_a_huge_grid_gives_way_before_the_failure_list():
    rows = [op(i, "pass", "", cell=f"c{i % 40}@cuda") for i in range(6000)] + [op(99999, "error", "boom")]
    md = render_markdown(summarize(rows))
    assert_safe(md)
    assert "Failing cases (1)" in md and "op99999" in md
    assert "Operator grid" in md or "Operators × cells" in md


def test_multibyte_text_counts_bytes_not_characters():
    reason = "失败💥" * 500
    rows = [op(i, "fail", reason) for i in range(2000)]
    md = render_markdown(summarize(rows))
    assert_safe(md)


def test_coverage_and_run_info_are_escaped_and_bounded():
    data = summarize([op(1, "fail", "x")])
    data["coverage"] = {"covered": 1, "registered": 9, "uncovered": [f"aten::{HOSTILE}"] * 5000}
    run = {"host": HOSTILE, "platform": HOSTILE, "wall_s": HOSTILE, "command": HOSTILE * 20}
    md = render_markdown(data, run)
    assert_safe(md)
    assert "uncovered overloads" in md and "Failing cases (1)" in md


@pytest.mark.parametrize("limit", [8_000, 20_000, 40_000])
def test_any_limit_is_respected(limit):
    rows = [op(i, "fail", HOSTILE * 10, cell=f"c{i % 30}@cuda") for i in range(2000)]
    assert_safe(render_markdown(summarize(rows), limit=limit), limit)


def test_junit_stays_valid_xml_whatever_the_messages_contain():
    rows = [op(1, "error", HOSTILE + "\ud800 \x07"), op(2, "fail", "\x1b[1mbold\x1b[0m")]
    root = ET.fromstring(render_junit(rows).split("?>", 1)[1])
    messages = [e.get("message") for e in root.iter() if e.get("message")]
    assert any("<script>" in m for m in messages)  # kept as text, escaped by XML itself
    assert not any("\x1b" in m or "\x00" in m for m in messages)
