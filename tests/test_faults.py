"""Planted faults: real misbehaving adapters (tests/fault_adapters/) run through the real command line
beside a good backend. Operators come from tests/fault_adapters/specs.py (via $PORTABILITY_SPECS), not
from kernels/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import ROOT

from portability.run.poison import _mallopt, perturbed_malloc, poison_allocator

FAULTS = "tests/fault_adapters/faults.yaml"
SPECS = {"PORTABILITY_SPECS": "tests/fault_adapters/specs.py"}
CASES = {"planted_scale/contiguous 64x65", "planted_scale/transposed 65x64"}


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def test_each_planted_fault_is_classified_and_every_other_result_survives(tmp_path, cli):
    out = tmp_path / "run"
    proc = cli("run", "--matrix", FAULTS, "--out", str(out), "--reruns", "0", env=SPECS)
    assert proc.returncode == 1, proc.stderr[-3000:]  # failures found
    rows = rows_of(out)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "a case was recorded twice"
    planned = {c["id"] for c in json.loads((out / "plan.json").read_text())["cases"]}
    assert planned == {r["id"] for r in rows if r["kind"] == "op"}, "every planned case has its row"
    by_cell: dict[str, dict[str, dict]] = {}
    for r in rows:
        if r["kind"] == "op":
            by_cell.setdefault(r["cell"], {})[f"{r['op']}/{r['case']}"] = r

    def statuses(cell: str) -> set[str]:
        assert set(by_cell[cell]) == CASES, cell
        return {r["status"] for r in by_cell[cell].values()}

    # the good backend, before and after its neighbours crash and hang, is untouched
    assert statuses("torch@cpu") == statuses("torch-after@cpu") == {"pass"}

    # a segfault in every case: each is a crash with the dying worker's last words (not its stack
    # dump), and the second case ran on a fresh worker (otherwise only the first would have a row)
    assert statuses("segfault@cpu") == {"crash"}
    for r in by_cell["segfault@cpu"].values():
        assert "planted: about to read address 0" in r["reason"] and "Segmentation fault" in r["reason"]
        assert "Thread 0x" not in r["reason"] and "File " not in r["reason"]

    assert statuses("hang@cpu") == {"timeout"}
    assert all("planted: spinning forever" in r["reason"] for r in by_cell["hang@cpu"].values())
    assert all(r["duration_s"] < 30 for r in by_cell["hang@cpu"].values())

    assert statuses("raises@cpu") == {"error"}
    assert all("planted kernel failure" in r["reason"] for r in by_cell["raises@cpu"].values())

    # wrong only for the strided input
    nc = by_cell["noncontiguous@cpu"]
    assert nc["planted_scale/transposed 65x64"]["status"] == "fail"
    assert nc["planted_scale/contiguous 64x65"]["status"] == "pass"

    # half of every output left as allocated: caught on every case, and what was caught is the poison
    # (3.4e38 from glibc's M_PERTURB on CPU, or NaN from the poisoned blocks), not luck
    assert statuses("unwritten@cpu") == {"fail"}
    for r in by_cell["unwritten@cpu"].values():
        assert "2080/4160 element(s)" in r["reason"]
        assert (r["max_abs_err"] or 0) > 1e37 or "NaN" in r["reason"], r

    # infrastructure, not the operator: a lost device, out of memory while the adapter sets up
    assert statuses("devicelost@cpu") == {"infra"}
    assert all(r["reason"].startswith("device lost: ") for r in by_cell["devicelost@cpu"].values())
    assert statuses("setupoom@cpu") == {"infra"}
    assert all("adapter set-up failed" in r["reason"] for r in by_cell["setupoom@cpu"].values())

    # an adapter that cannot import is an error of its cell, not a pile of operator failures
    cell = next(r for r in rows if r["id"] == "cell:importfails@cpu")
    assert cell["status"] == "error" and "libmychip_runtime.so" in cell["reason"]
    assert "importfails@cpu" not in by_cell

    summary = {c["cell"]: c for c in json.loads((out / "scorecard.json").read_text())["cells"]}
    assert summary["importfails@cpu"]["state"] == "error" and summary["importfails@cpu"]["cases"] == 0
    assert Counter(summary["torch-after@cpu"]["counts"]) == Counter({"pass": 2})
    assert Counter(summary["devicelost@cpu"]["counts"]) == Counter({"infra": 2})
    md = (out / "scorecard.md").read_text()
    assert "**9 failing case(s).**" in md  # segfault, hang, raises, unwritten 2 each; noncontiguous 1
    ET.parse(out / "junit.xml")


def test_resume_after_kill_9_loses_and_duplicates_nothing(tmp_path):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "backends:\n  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}\n"
        "operators: {include: [planted_work]}\n"
        # Timing stops at budget_s, so each case takes ~0.5 s: the kill must land while cases remain even
        # when CI's 2 busy cores stall this polling process (with 5 repetitions all 12 could finish first)
        "perf: {warmup: 1, repetitions: 100000, budget_s: 0.5, timeout_s: 60}\n"
    )
    out = tmp_path / "run"
    args = [sys.executable, "-m", "portability", "run", "--matrix", str(matrix), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT), **SPECS}
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    results = out / "results.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not results.exists() or len(results.read_text().splitlines()) < 3):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)  # the orchestrator, pytest and its worker, mid-case
    proc.wait()
    before = rows_of(out)
    planned = {c["id"] for c in json.loads((out / "plan.json").read_text())["cases"]}
    assert len(planned) == 12
    assert 0 < len([r for r in before if r["kind"] == "op"]) < len(planned)
    with results.open("ab") as fh:  # as if the kill had landed in the middle of an append
        fh.write(b'{"id": "torch@cpu::planted_work::square 9')

    resumed = subprocess.run(
        [*args, "--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    after = rows_of(out)  # every line parses: the torn one was cut, not glued to the next row
    op_ids = [r["id"] for r in after if r["kind"] == "op"]
    assert sorted(op_ids) == sorted(planned), "every planned case has exactly one row"
    assert after[: len(before)] == before, "rows written before the kill are kept as they were"
    assert all(r["status"] == "pass" for r in after if r["kind"] == "op")


def test_a_hung_case_holds_up_at_most_the_case_after_it(tmp_path, cli):
    """One case of forty hangs until its timeout. The others must not wait behind it in the hung worker's
    queue (on the H100, one FlagGems case that never returned held a queue of cases for 300 s): idle
    workers take them over. Only the one case pytest has already taken as `nextitem` must wait."""
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "backends:\n  hang-one: {adapter: 'tests/fault_adapters/hang_one.py:HangOnOneCaseAdapter', "
        "devices: [cpu], dtypes: [fp32]}\n"
        "operators: {include: [planted_many]}\n"
        "perf: {warmup: 1, repetitions: 3, budget_s: 0.02, timeout_s: 3600}\n"
    )
    out = tmp_path / "run"
    args = ("--out", str(out), "--workers", "2", "--case-timeout", "15")  # overrides the hour
    proc = cli("run", "--matrix", str(matrix), *args, env=SPECS)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the hung case timed out
    ops = [r for r in rows_of(out) if r["kind"] == "op"]
    hung = [r for r in ops if r["case"] == "vector 135"]
    others = [r for r in ops if r["case"] != "vector 135"]
    assert [r["status"] for r in hung] == ["timeout"] and len(others) == 39
    assert hung[0]["duration_s"] < 60 and "timeout 15s" in hung[0]["reason"]
    assert {r["status"] for r in others} == {"pass"}
    late = [r["case"] for r in others if r["time"] > hung[0]["time"]]
    assert len(late) <= 1, f"{len(late)} cases waited for the hung case's timeout: {late}"


def test_a_case_that_hangs_at_every_dtype_costs_one_timeout_not_three(tmp_path, cli):
    """The three dtypes of one case are neighbours in the catalog. Fed to worksteal in that order they
    share a worker's block and their timeouts add up (seen on an H100: FlagGems' top-256 over 151,936
    logits, 120 s at each dtype). The runner deals them to different workers: they time out together."""
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "backends:\n  hang-one: {adapter: 'tests/fault_adapters/hang_one.py:HangOnOneCaseAdapter', "
        "devices: [cpu], dtypes: [fp32, fp16, bf16]}\n"
        "operators: {include: [planted_dtypes]}\n"
        "perf: {warmup: 1, repetitions: 3, budget_s: 0.02, timeout_s: 3600}\n"
    )
    out = tmp_path / "run"
    timeout = 20
    args = ("--out", str(out), "--workers", "3", "--case-timeout", str(timeout))
    proc = cli("run", "--matrix", str(matrix), *args, env=SPECS)
    assert proc.returncode == 1, proc.stderr[-3000:]  # the hung case timed out
    ops = [r for r in rows_of(out) if r["kind"] == "op"]
    hung = [r for r in ops if r["case"] == "vector 135"]
    assert sorted(r["dtype"] for r in hung) == ["bf16", "fp16", "fp32"]
    assert {r["status"] for r in hung} == {"timeout"}
    assert {r["status"] for r in ops if r not in hung} == {"pass"} and len(ops) == 36
    ends = sorted(r["time"] for r in hung)
    assert ends[-1] - ends[0] < timeout / 2, f"the timeouts ran one after another: {ends}"


def test_a_case_this_torch_cannot_build_is_skipped_with_the_reason_not_infra(tmp_path, cli):
    """The OpInfo table is generated on one torch; another torch's op_db can lack a sample (torch 2.11 on
    the H100 lacked 15). Such a case is `skip` with the reason, not a harness failure."""
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "backends:\n  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}\n"
        "operators: {include: [planted_unavailable]}\n"
    )
    out = tmp_path / "run"
    proc = cli("run", "--matrix", str(matrix), "--out", str(out), env=SPECS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["case"]: r for r in rows_of(out) if r["kind"] == "op"}
    assert rows["vector 8"]["status"] == "pass"
    absent = rows["s7 absent"]
    assert absent["status"] == "skip"
    assert absent["reason"] == "case unavailable: op_db planted has no sample 7 at fp32 in this torch"


def test_a_case_that_cannot_fit_in_memory_is_refused_at_plan_time_with_the_figure(tmp_path, cli):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "backends:\n  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}\n"
        "operators: {include: [planted_huge]}\n"
    )
    out = tmp_path / "run"
    proc = cli("run", "--matrix", str(matrix), "--out", str(out), env=SPECS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["id"]: r for r in rows_of(out)}
    huge = rows["torch@cpu::planted_huge::4 TiB::fp32"]
    assert huge["status"] == "skip"
    assert huge["reason"].startswith("refused at plan time: needs about 12288.00 GiB (3x its 4096.00 GiB")
    assert "GiB free" in huge["reason"]


@pytest.mark.skipif(_mallopt() is None, reason="not glibc: no M_PERTURB")
@pytest.mark.parametrize("numel", [4160, 300_000, 10_000_000])  # heap chunk, large chunk, mmap'd
def test_cpu_allocations_inside_the_checked_call_are_poisoned(numel):
    # (buffers under ~1 KiB can come from glibc's per-thread cache, which M_PERTURB does not fill)
    with perturbed_malloc("cpu"):
        got = torch.empty(numel)
    assert bool((got.view(torch.int32) == 0x7F7F7F7F).all())
    after = torch.empty(numel)  # and only inside: nothing is paid outside the checked call
    del after


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="the caching allocator: CUDA (CPU: M_PERTURB above)"
)
def test_poisoned_blocks_come_back_as_outputs_on_the_device():
    want = torch.zeros(64, 65, dtype=torch.float64)
    poison_allocator(want, "cuda", "fp32")
    got = torch.empty(64, 65, device="cuda")  # the caching allocator hands back the very block
    assert bool(torch.isnan(got).all())
