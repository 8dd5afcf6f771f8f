"""Many machines and pull requests: ci-matrix, merge of shards, diff against a baseline."""

from __future__ import annotations

import json
import shutil

from conftest import ROOT

from portability.results.store import ResultWriter, read_results
from portability.scorecard.write import md_text

GPU_SHARD = ROOT / "docs" / "scorecards" / "h100-faults-2026-11-24"
H100 = ROOT / "docs" / "scorecards" / "h100-2026-11-24" / "results.jsonl"


def test_ci_matrix_lists_every_declared_cell_with_a_runner_label(cli):
    proc = cli("ci-matrix")
    assert proc.returncode == 0, proc.stderr
    include = json.loads(proc.stdout)["include"]
    cells = {c["cell"]: c for c in include}
    assert {"torch@cpu", "flaggems@cuda", "inductor@npu"} <= set(cells)
    assert cells["flaggems@cuda"]["runner"] == "portability-cuda"
    assert cells["torch@cpu"]["runner"] == "ubuntu-latest"


def test_merge_a_cpu_shard_made_here_with_a_gpu_shard_from_the_h100(tmp_path, cli):
    cpu = tmp_path / "cpu"
    proc = cli(
        "run",
        "--backends",
        "torch",
        "--devices",
        "cpu",
        "--ops",
        "stack,copy_",
        "--dtypes",
        "fp32",
        "--out",
        str(cpu),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    merged = tmp_path / "merged"
    proc = cli("merge", str(cpu), str(GPU_SHARD), "--out", str(merged))
    assert proc.returncode == 0, proc.stderr
    rows = read_results(merged)
    assert {r["cell"] for r in rows} >= {"torch@cpu", "torch@cuda", "triton-oob@cuda"}
    assert len(rows) == len(read_results(cpu)) + len(read_results(GPU_SHARD))
    assert "0 conflict(s)" in proc.stderr
    md = (merged / "scorecard.md").read_text()
    assert "NVIDIA H100 80GB HBM3" in md and "x86" in md


def test_merge_reports_duplicates_and_conflicts_and_keeps_the_worse_verdict(tmp_path, cli):
    row = {
        "id": "a@cuda::mm::x::fp32",
        "kind": "op",
        "cell": "a@cuda",
        "backend": "a",
        "device": "cuda",
        "op": "mm",
        "case": "x",
        "dtype": "fp32",
    }
    other = {**row, "id": "a@cuda::mm::y::fp32", "case": "y"}
    for name, rows in {
        "m1": [{**row, "status": "pass"}, {**other, "status": "pass"}],
        "m2": [{**row, "status": "fail", "reason": "wrong"}, {**other, "status": "pass"}],
    }.items():
        writer = ResultWriter(tmp_path / name / "results.jsonl")
        for r in rows:
            writer.append(r)
    proc = cli("merge", str(tmp_path / "m1"), str(tmp_path / "m2"), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0
    report = json.loads((tmp_path / "out" / "merge.json").read_text())
    assert report["duplicates"] == [other["id"]]
    assert [c["id"] for c in report["conflicts"]] == [row["id"]]
    merged = {r["id"]: r for r in read_results(tmp_path / "out")}
    assert merged[row["id"]]["status"] == "fail"


def test_diff_marks_regressions_beyond_noise_and_improvements(tmp_path, cli):
    base = tmp_path / "base.jsonl"
    shutil.copy(H100, base)
    rows = read_results(base)
    new_rows = []
    broke = drop = fixed = noisy = None
    for r in rows:
        r = dict(r)
        if r["kind"] == "op" and r["cell"] == "inductor@cuda" and r["status"] == "pass":
            if broke is None:
                broke, r["status"] = r["id"], "fail"
            elif drop is None and r.get("speedup"):
                drop, r["speedup"] = r["id"], r["speedup"] * 0.4
                r["latency_p10_ms"] = r["latency_p90_ms"] = r["latency_ms"]
            elif noisy is None and r.get("speedup"):
                noisy, r["speedup"] = r["id"], r["speedup"] * 0.95  # within noise: not a regression
        if r["kind"] == "op" and r["status"] == "fail" and r["cell"] == "flaggems@cuda" and fixed is None:
            fixed, r["status"] = r["id"], "pass"
        new_rows.append(r)
    new = tmp_path / "new"
    writer = ResultWriter(new / "results.jsonl")
    for r in new_rows:
        writer.append(r)
    proc = cli("diff", str(base), str(new), "--fail-on-regression")
    assert proc.returncode == 1
    md = proc.stdout
    assert md.startswith("<!-- flagos-portability-diff -->")
    assert "**2 regression(s).** 1 improvement(s)." in md
    regressions = md.split("### Regressions")[1].split("### Improvements")[0]
    assert "pass → fail" in regressions and "speedup" in regressions
    assert md_text(noisy, 120) not in md  # a change within the measured noise is not reported
    assert md_text(broke, 120) in regressions and md_text(drop, 120) in regressions
    assert "<details><summary>Full scorecard of this run</summary>" in md
    assert cli("diff", str(base), str(base), "--fail-on-regression").returncode == 0


def test_diff_of_thousands_of_regressions_fits_one_pr_comment(tmp_path, cli):
    """3,000 cases going from pass to fail, with long ids: verdict first, as many changes as fit with a
    count of the rest, and the whole comment within GitHub's 64 KiB."""
    base, new = (
        ResultWriter(tmp_path / "base" / "results.jsonl"),
        ResultWriter(tmp_path / "new" / "results.jsonl"),
    )
    for i in range(3000):
        row = {
            "id": f"flaggems@cuda::aten.upsample_bicubic2d_aa_backward_{i}::a long case name {i:05d}::bf16",
            "kind": "op",
            "cell": "flaggems@cuda",
            "backend": "flaggems",
            "device": "cuda",
            "op": f"aten.upsample_bicubic2d_aa_backward_{i}",
            "case": f"a long case name {i:05d}",
            "dtype": "bf16",
        }
        base.append({**row, "status": "pass"})
        new.append({**row, "status": "fail", "reason": "x" * 200})
    proc = cli("diff", str(tmp_path / "base"), str(tmp_path / "new"))
    md = proc.stdout
    assert proc.returncode == 0 and len(md.encode()) <= 64 * 1024, len(md.encode())
    assert md.startswith("<!-- flagos-portability-diff -->") and "**3000 regression(s).**" in md
    shown = md.split("### Regressions")[1].count("pass → fail")
    assert 100 < shown < 3000 and f"… {3000 - shown} more regressions" in md
