"""Untrusted text in the PR comment: error messages and names cannot break, inject, ping or bloat it."""

from __future__ import annotations

from portability.scorecard import MAX_COMMENT_BYTES, md_text, render_markdown, summarize

HOSTILE = "boom | `rm -rf` <script>alert(1)</script> @maintainers fixes #123 **bold** [x](http://evil)\nnext"


def test_md_text_neutralises_tables_code_html_mentions_refs_and_newlines():
    s = md_text(HOSTILE)
    assert "\n" not in s
    assert "|" not in s.replace("\\|", "")
    assert "`" not in s.replace("\\`", "")
    assert "<script>" not in s and "&lt;script&gt;" in s
    assert "@maintainers" not in s and "@\u200bmaintainers" in s
    assert "#123" not in s and "#\u200b123" in s
    assert "**" not in s.replace("\\*", "")
    assert len(md_text("x" * 10_000)) <= 240


def op(i: int, status: str, reason: str) -> dict:
    return {
        "id": f"c@cuda::op{i}::case::fp32",
        "kind": "op",
        "cell": "c@cuda",
        "backend": "c",
        "device": "cuda",
        "op": f"op{i} {HOSTILE}",
        "case": "case",
        "dtype": "fp32",
        "status": status,
        "reason": reason,
    }


def test_comment_stays_under_64kb_and_keeps_the_summary_when_thousands_fail():
    rows = [op(i, "fail", HOSTILE * 50) for i in range(3000)]
    md = render_markdown(summarize(rows))
    assert len(md.encode()) <= MAX_COMMENT_BYTES
    assert "**3000 failing case(s).**" in md and "### Cells" in md
    assert "<script>" not in md and "@maintainers" not in md
    table_rows = [line for line in md.splitlines() if line.startswith("| op")]
    assert all(line.count(" | ") == table_rows[0].count(" | ") for line in table_rows)  # no broken rows


def test_small_comment_has_grid_inline_and_failures_collapsed():
    md = render_markdown(summarize([op(1, "fail", "bad value"), op(2, "pass", "")]))
    assert "### Operators × cells" in md
    assert "<details><summary>Failing cases (1)</summary>" in md
