"""Timing modes, cache state, roofline and noise (issue #17), through the real command line with a real
adapter that is slow to dispatch (tests/fault_adapters/slow_dispatch.py) beside torch."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from portability.ci.diff import Run, compare
from portability.perf.cache import cpu_last_level_cache_bytes, flush_bytes
from portability.perf.roofline import Work, bound_ms, memory_bound, roofline_pct
from portability.perf.timing import graph_replay_time

PERF = "tests/fault_adapters/perf.yaml"
SPECS = {"PORTABILITY_SPECS": "tests/fault_adapters/specs.py"}
HOST_SLEEP_MS = 5.0  # slow_dispatch.HOST_SLEEP_S


@pytest.fixture(scope="module")
def perf_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One run of the slow-to-dispatch adapter (torch timed beside it in its worker), timing repeated
    twice, the CPU's peaks measured afresh."""
    from conftest import run_cli

    tmp = tmp_path_factory.mktemp("perf")
    out = tmp / "run"
    env = {**SPECS, "XDG_CACHE_HOME": str(tmp / "cache")}
    proc = run_cli("run", "--matrix", PERF, "--out", str(out), "--repeat", "2", env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _rows(out: Path, cell: str) -> list[dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "op" and r["cell"] == cell]


def test_slow_dispatch_is_large_in_call_time_and_small_in_device_time(perf_run: Path) -> None:
    rows = _rows(perf_run, "slowdispatch@cpu")
    assert len(rows) == 2 and {r["status"] for r in rows} == {"pass"}
    for r in rows:
        assert r["latency_ms"] >= HOST_SLEEP_MS, r  # the host's sleep is in the call time
        assert r["device_ms"] < HOST_SLEEP_MS / 5, r  # and not in the device time (a 64x65 multiply)
        assert r["device_ms_source"] == "cpu self time" and r["kernels_per_call"] == 1  # aten::mul
        assert r["speedup"] < 0.5, r  # torch's call takes microseconds: the sleep dominates
        assert r["device_speedup"] > 2 * r["speedup"], r  # device time tells the kernels apart far less


def test_rows_record_cache_state_roofline_and_repeat_noise(perf_run: Path) -> None:
    for r in _rows(perf_run, "slowdispatch@cpu"):
        assert r["cache"] == "cold", r  # an elementwise op has no FLOP model: memory-bound, flushed
        assert r["repeat"] == 2 and r["latency_cv"] >= 0, r
        assert r["work_bytes"] > 0 and r["roofline_pct"] > 0 and r["roofline_basis"] == "device_ms", r
        assert 0 < r["timing_s"] <= r["duration_s"], r


def test_run_json_records_peaks_and_the_part_spent_timing(perf_run: Path) -> None:
    info = json.loads((perf_run / "run.json").read_text())
    peaks = info["peaks"]["cpu"]
    assert peaks["cache"] == "miss" and peaks["bandwidth_Bps"] > 0 and peaks["flops"]["fp32"] > 0
    assert Path(peaks["cache_file"]).exists()  # the next cell on this device reads it instead
    assert 0 < info["timing_s"] <= info["cases_s"] and 0 < info["timing_share"] <= 1


def test_scorecard_shows_both_modes_and_the_roofline(perf_run: Path) -> None:
    card = json.loads((perf_run / "scorecard.json").read_text())
    slow = next(c for c in card["cells"] if c["cell"] == "slowdispatch@cpu")["perf"]
    assert slow["timed"] == 2 and slow["roofline"]["cases"] == 2 and slow["cache"] == {"cold": 2}
    assert slow["fast_p"]["latency"]["0.8"] == 0.0  # slower than native in call time, every case
    text = (perf_run / "scorecard.md").read_text()
    assert "### Performance: call time and device time" in text and "host dispatch" in text
    assert "median roofline_pct per operator: planted\\_scale" in text


def test_cpu_flush_buffer_is_twice_the_last_level_cache(tmp_path: Path) -> None:
    for index, size in (("index0", "32K"), ("index2", "1024K"), ("index3", "32768K")):
        (tmp_path / index).mkdir()
        (tmp_path / index / "size").write_text(size + "\n")
    assert cpu_last_level_cache_bytes(tmp_path) == 32 << 20
    assert cpu_last_level_cache_bytes(tmp_path / "absent") is None
    llc = cpu_last_level_cache_bytes()
    assert flush_bytes("cpu") == (2 * llc if llc else 64 << 20)


def test_roofline_takes_the_roof_that_applies() -> None:
    peaks = {"bandwidth_Bps": 1e12, "flops": {"bf16": 1e15}}
    copy = Work(bytes=10**9, flops=None)  # 1 ms at 1 TB/s
    gemm = Work(bytes=10**8, flops=10**13)  # 0.1 ms of traffic, 10 ms of compute
    assert bound_ms(copy, peaks, "bf16") == pytest.approx(1.0)
    assert bound_ms(gemm, peaks, "bf16") == pytest.approx(10.0)
    assert roofline_pct(copy, peaks, "bf16", measured_ms=2.0) == pytest.approx(50.0)
    assert memory_bound(copy, peaks, "bf16") and not memory_bound(gemm, peaks, "bf16")
    assert bound_ms(gemm, peaks, "fp32") is None  # no fp32 GEMM peak measured: no partial roof


def test_graph_replay_is_cuda_only() -> None:
    assert graph_replay_time(lambda: None, "cpu", reps=3) is None


def _row(speedup: float, cv: float | None) -> dict:
    row = {"id": "x@cpu::op::c::fp32", "kind": "op", "cell": "x@cpu", "backend": "x", "op": "op"}
    row.update(case="c", dtype="fp32", status="pass", speedup=speedup)
    row.update(latency_ms=1.0, latency_p10_ms=0.99, latency_p90_ms=1.01)
    return {**row, "latency_cv": cv} if cv is not None else row


def test_diff_threshold_comes_from_the_measured_cv() -> None:
    # a 20 % drop is a regression at 1 % spread, and within the noise of cases measured at 10 % CV
    def run(row: dict) -> Run:
        return Run(rows={row["id"]: row})

    assert len(compare(run(_row(1.0, None)), run(_row(0.8, None))).regressions) == 1
    assert compare(run(_row(1.0, 0.10)), run(_row(0.8, 0.10))).regressions == []


def test_timing_agreement_tool_runs_the_matrix_side_on_a_cpu(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from conftest import ROOT

    cmd = [sys.executable, "tools/timing_agreement.py", "--device", "cpu", "--backends", "torch"]
    cmd += ["--ops", "planted_scale", "--dtype", "fp32", "--reps", "3", "--out", str(tmp_path)]
    env = {**os.environ, **SPECS, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads((tmp_path / "agreement.json").read_text())
    assert [r["case"] for r in rows] == ["contiguous 64x65", "transposed 65x64"]
    for r in rows:
        assert r["device_ms"] > 0 and r["latency_ms"] > 0 and r["do_bench_ms"] is None, r
        assert r["do_bench_note"], r  # no Triton GPU driver on a CPU host: said, not silently blank
    assert "0/0 cases within ±5%" in (tmp_path / "agreement.md").read_text()
