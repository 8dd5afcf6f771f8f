"""History and pictures: the trend file and the self-contained HTML report, rendered in a real browser."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from conftest import ROOT

H100 = ROOT / "docs" / "scorecards" / "h100-2026-11-24"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def test_each_run_appends_its_summary_to_the_trend_file(tmp_path, cli):
    for name in ("first", "second"):
        proc = cli(
            "run",
            "--backends",
            "torch",
            "--devices",
            "cpu",
            "--ops",
            "add",
            "--dtypes",
            "fp32",
            "--out",
            str(tmp_path / name),
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(x) for x in (tmp_path / "trend.jsonl").read_text().splitlines()]
    assert [line["run"].rsplit("/", 1)[-1] for line in lines] == ["first", "second"]
    planned = len(json.loads((tmp_path / "second" / "plan.json").read_text())["cases"])
    assert planned >= 5 and lines[-1]["cells"]["torch@cpu"]["pass"] == planned and lines[-1]["failing"] == 0


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_grid_and_heatmap_in_headless_chromium(tmp_path, cli):
    run = tmp_path / "h100"
    run.mkdir()
    for f in ("results.jsonl", "plan.json"):
        shutil.copy(H100 / f, run / f)
    trend = tmp_path / "trend.jsonl"
    for _ in range(2):
        trend.open("a").write(json.dumps({"cells": {"torch@cuda": {"pass": 648}}, "failing": 7}) + "\n")
    proc = cli("report", str(run), "--trend", str(trend))
    assert proc.returncode == 0, proc.stderr
    page = run / "report.html"
    assert page.read_text().count("data:image/png;base64,") == 2  # heatmap + trend, embedded

    dom = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    ).stdout
    assert '<table id="grid">' in dom and "<th>rotary_embedding</th>" in dom
    assert 'id="heatmap"' in dom and "not run" in dom

    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'profile2'}",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)[..., :3]
    red = ((pixels[..., 0] > 0.6) & (pixels[..., 1] < 0.3) & (pixels[..., 2] < 0.3)).sum()
    green = ((pixels[..., 1] > 0.5) & (pixels[..., 0] < 0.5) & (pixels[..., 2] < 0.4)).sum()
    assert red > 1000 and green > 100, "the heatmap image did not render"
