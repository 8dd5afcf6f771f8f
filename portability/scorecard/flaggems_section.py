"""The scorecard's FlagGems lines: which FlagGems the run tested (version, and git commit when it came from
a source tree) and the declared-support view of its vendor backends (portability/flaggems/vendors.py)."""

from __future__ import annotations

from typing import Any

from portability.flaggems.source import label
from portability.flaggems.vendors import from_json, markdown
from portability.scorecard.safe_text import md_text


def under_test(data: dict[str, Any]) -> str | None:
    """`FlagGems under test: 5.3.4, commit 1a2b3c4d5e6f, with uncommitted changes`, from the flaggems cells'
    versions, else from what coverage measured; None when the run has no FlagGems."""
    found = [c.get("versions") or {} for c in data["cells"] if (c.get("versions") or {}).get("flag-gems")]
    found += [(data.get("coverage") or {}).get("flag_gems") or {}]
    labels = list(dict.fromkeys(label(v) for v in found if v.get("flag-gems")))
    if not labels:
        return None
    return f"FlagGems under test: **{md_text(' / '.join(labels), 120)}**"


def declared_support(data: dict[str, Any], budget: int) -> list[str]:
    """The declared-support section (its per-vendor lists dropped, then shortened, to fit `budget`
    bytes); [] when the run recorded none."""
    if not data.get("declared_support"):
        return []
    support = from_json(data["declared_support"])
    measured: dict[str, list[str]] = {}
    for c in data["cells"]:
        vendor = (c.get("versions") or {}).get("flag_gems.vendor")
        if vendor and c["state"] not in ("unavailable", "error", "infra"):
            measured.setdefault(vendor, []).append(c["cell"])
    cells = {vendor: ", ".join(names) for vendor, names in measured.items()}
    title = ["### FlagGems: declared support per vendor", ""]
    for cap in (2_000, 300):
        lines = [*title, *markdown(support, cells, cap=cap), ""]
        if len("\n".join(lines).encode()) <= budget:
            return lines
    return [*title, *markdown(support, cells, details=False), "", "_Per-vendor lists: scorecard.json._", ""]
