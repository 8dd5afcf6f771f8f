"""The runner owns its process tree, rows are never torn, and every file the tool reads is validated.

Real signals to a real `portability run` (SIGTERM, SIGHUP, kill -9 of the parent alone), a second run into
a directory a live run holds, a run onto a filesystem that fills up (a 64 KiB tmpfs), and generated
corruptions of every file `scorecard`, `merge`, `diff` and `run --resume` read, all through the real
command line. Operators come from tests/fault_adapters/specs.py (via $PORTABILITY_SPECS)."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, one_line_error, processes_with_env, run_cli, start_cli, wait_for

from portability.results.lock import GENERATION_ENV

SPECS = {"PORTABILITY_SPECS": "tests/fault_adapters/specs.py"}
# Two fast cases on torch, then two that are held while a file exists (tests/fault_adapters/hold.py): a
# run that is reliably still going when the signal lands, with rows already written. Without the file,
# `--resume` finishes it at once.
HOLDING = (
    "backends:\n  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}\n"
    "  hold: {adapter: 'tests/fault_adapters/hold.py:HoldAdapter', devices: [cpu], dtypes: [fp32]}\n"
    "operators: {include: [planted_scale]}\n"
    "perf: {warmup: 1, repetitions: 3, budget_s: 0.05, timeout_s: 600}\n"
)


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def op_ids(out: Path) -> list[str]:
    return [r["id"] for r in rows_of(out) if r["kind"] == "op"]


def planned(out: Path) -> set[str]:
    return {c["id"] for c in json.loads((out / "plan.json").read_text())["cases"]}


def start_held_run(tmp_path: Path) -> tuple[subprocess.Popen, Path, str]:
    """A run that has written the torch cell's rows and is held in the hold cell; its generation."""
    matrix, hold = tmp_path / "matrix.yaml", tmp_path / "hold"
    matrix.write_text(HOLDING)
    hold.touch()
    out = tmp_path / "run"
    env = {**SPECS, "PORTABILITY_HOLD_FILE": str(hold)}
    proc = start_cli("run", "--matrix", str(matrix), "--out", str(out), env=env)
    wait_for(lambda: any((out / "logs").glob("hold_cpu.*.inflight")), what="the hold cell's first case")
    generation = json.loads((out / "run.lock").read_text())["generation"]
    assert processes_with_env(GENERATION_ENV, generation), "the pytest session and its worker run"
    return proc, out, generation


def resume(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (out.parent / "hold").unlink(missing_ok=True)
    matrix = str(out.parent / "matrix.yaml")
    return run_cli("run", "--matrix", matrix, "--out", str(out), "--resume", *args, env=SPECS)


def assert_resumed_whole(out: Path, before: list[dict]) -> None:
    after = rows_of(out)
    assert after[: len(before)] == before, "rows written before the interrupt are kept as they were"
    ids = op_ids(out)
    assert len(ids) == len(set(ids)), "no case recorded twice"
    assert set(ids) == planned(out), "no case lost"
    assert {r["status"] for r in after if r["kind"] == "op"} == {"pass"}


def test_sigterm_stops_every_process_keeps_rows_says_interrupted_and_resume_completes(tmp_path):
    proc, out, generation = start_held_run(tmp_path)

    second = run_cli("run", "--matrix", str(tmp_path / "matrix.yaml"), "--out", str(out), env=SPECS)
    assert second.returncode == 2
    assert f"is in use by a live run (pid {proc.pid}," in one_line_error(second.stderr)

    os.kill(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-2000:]
    assert "Traceback" not in stderr
    wait_for(lambda: not processes_with_env(GENERATION_ENV, generation), 10, "every worker to end")
    run = json.loads((out / "run.json").read_text())
    assert run["interrupted"] is True and run["signal"] == "SIGTERM"
    md = (out / "scorecard.md").read_text()
    assert "**The run was interrupted (SIGTERM).**" in md and "planned case(s) were not run" in md
    before = rows_of(out)
    assert sorted(r["cell"] for r in before if r["kind"] == "op") == ["torch@cpu", "torch@cpu"]

    resumed = resume(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_resumed_whole(out, before)


def test_kill_9_of_the_parent_ends_its_workers_and_resume_of_another_plan_is_refused(tmp_path):
    proc, out, generation = start_held_run(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)  # the parent alone: no handler runs, the kernel ends its children
    proc.communicate(timeout=60)
    wait_for(lambda: not processes_with_env(GENERATION_ENV, generation), 10, "every worker to end")
    before = rows_of(out)

    other = resume(out, "--ops", "planted_many")  # another plan's rows would mix with this one's
    assert other.returncode == 2
    assert "plans other cases than the run in" in one_line_error(other.stderr)
    resumed = resume(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_resumed_whole(out, before)


def test_sighup_ends_the_run_and_resume_skips_bad_rows_with_their_line(tmp_path):
    proc, out, generation = start_held_run(tmp_path)
    os.kill(proc.pid, signal.SIGHUP)  # the terminal went away
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGHUP and "Traceback" not in stderr
    wait_for(lambda: not processes_with_env(GENERATION_ENV, generation), 10, "every worker to end")
    assert json.loads((out / "run.json").read_text())["signal"] == "SIGHUP"
    before = rows_of(out)
    with (out / "results.jsonl").open("ab") as fh:
        fh.write(b'[{"id": "x"}]\n\xff\xfe not a row\n')

    resumed = resume(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    results = out / "results.jsonl"
    said = f"skipped 2 bad row(s) of {results}: {results}:{len(before) + 1}: a JSON list, expected an object"
    assert said in resumed.stderr
    rows = [json.loads(x) for x in (out / "results.jsonl").read_bytes().splitlines() if x.startswith(b"{")]
    ids = [r["id"] for r in rows if r["kind"] == "op"]
    assert sorted(ids) == sorted(planned(out)) and rows[: len(before)] == before


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (root and mount(8) needed: skipped otherwise), and a function to remount it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount(8): cannot make a small filesystem")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, check=False
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (root needed): {made.stderr.decode().strip()[:120]}")

    def remount(options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(mnt)], check=True)

    try:
        yield mnt, remount
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_stops_the_run_in_one_line_keeps_every_row_and_resume_runs_the_rest(tmp_path, small_disk):
    mnt, remount = small_disk
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "backends:\n  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}\n"
        "operators: {include: [planted_many]}\n"
        "perf: {warmup: 1, repetitions: 3, budget_s: 0.02, timeout_s: 60}\n"
    )
    out = mnt / "run"
    full = run_cli("run", "--matrix", str(matrix), "--out", str(out), env=SPECS)
    assert full.returncode == 75, full.stderr[-3000:]
    assert "infra:" in one_line_error(full.stderr) and "--resume" in full.stderr
    before = rows_of(out)  # every line parses: no row torn or glued to the next
    ids = op_ids(out)
    assert 0 < len(ids) < 40 and len(ids) == len(set(ids))
    assert {r["status"] for r in before if r["kind"] == "op"} == {"pass"}, "no crash for lack of space"

    remount("ro")  # a read-only target is refused before anything runs (bad input), nothing changed
    readonly = run_cli("run", "--matrix", str(matrix), "--out", str(out), "--resume", env=SPECS)
    assert readonly.returncode == 2 and "is not writable" in one_line_error(readonly.stderr)
    assert rows_of(out) == before

    remount("rw,size=4m")
    resumed = run_cli("run", "--matrix", str(matrix), "--out", str(out), "--resume", env=SPECS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert rows_of(out)[: len(before)] == before
    ids = op_ids(out)
    assert len(ids) == len(set(ids)) == 40 and set(ids) == planned(out)


# --- files the tool reads: generated corruptions through the real command line ---------------------

PLAN = "f" * 16


def _row(case: str, status: str = "pass", cell: str = "torch@cpu", **extra) -> dict:
    return {
        "id": f"{cell}::planted_scale::{case}::fp32",
        "kind": "op",
        "cell": cell,
        "backend": cell.split("@")[0],
        "device": "cpu",
        "op": "planted_scale",
        "case": case,
        "dtype": "fp32",
        "status": status,
        "reason": None if status == "pass" else "planted",
        "latency_ms": 0.5,
        "speedup": 1.0,
        "versions": {"torch": "2.13.0"},
        "plan": PLAN,
        "time": 1.0,
        **extra,
    }


def make_run(path: Path, cases: int = 3, versions: str = "2.13.0", plan: str = PLAN) -> list[bytes]:
    """A valid run directory (rows, plan.json, run.json) as `portability run` writes them; returns its
    result lines."""
    path.mkdir(parents=True)
    cell = {"id": "cell:torch@cpu", "kind": "cell", "cell": "torch@cpu", "status": "pass", "plan": plan}
    cell["versions"] = {"torch": versions}
    rows = [cell] + [_row(f"v{i}", versions={"torch": versions}, plan=plan) for i in range(cases)]
    lines = [json.dumps(r).encode() + b"\n" for r in rows]
    (path / "results.jsonl").write_bytes(b"".join(lines))
    fields = ("id", "cell", "backend", "device", "op", "case", "dtype")
    timing = {"atol": 1e-5, "rtol": 1e-5, "warmup": 1, "repetitions": 3, "budget_s": 0.1}
    planned = [{**{k: r[k] for k in fields}, **timing} for r in rows[1:]]
    torch_cell = {"backend": "torch", "adapter": "torch", "device": "cpu", "dtypes": ["fp32"]}
    document = {"fingerprint": plan, "cells": [torch_cell], "cases": planned, "timeout_s": 60, "workers": 1}
    (path / "plan.json").write_text(json.dumps(document))
    (path / "run.json").write_text(json.dumps({"command": "portability run", "wall_s": 1.0}))
    return lines


def bad_rows(seed: int, damaged_rows: int = 20) -> list[bytes]:
    """One of each kind of bad line, then seeded random byte damage to a valid row (every one of which
    is verified not to be a valid row by itself)."""
    valid = json.dumps(_row("v9")).encode()
    kinds = [
        b"\xff\xfe" + valid,  # invalid UTF-8
        valid.replace(b'"cpu"', b'"c\x00pu"', 1),  # a NUL byte
        json.dumps({k: v for k, v in _row("v9").items() if k != "id"}).encode(),
        json.dumps({k: v for k, v in _row("v9").items() if k != "cell"}).encode(),
        json.dumps(_row("v9", status=7)).encode(),
        json.dumps({**_row("v9"), "id": 42}).encode(),
        json.dumps({**_row("v9"), "latency_ms": "fast"}).encode(),
        json.dumps({**_row("v9"), "speedup": True}).encode(),
        json.dumps({**_row("v9"), "versions": ["torch"]}).encode(),
        json.dumps({**_row("v9"), "reason": {"a": 1}}).encode(),
        json.dumps({**_row("v9"), "op": None}).encode(),
        json.dumps({**_row("v9"), "kind": "weird"}).encode(),
        json.dumps([_row("v9")]).encode(),  # an array instead of an object
        b'"a string"',
        b"null",
        b"[" * 100_000,  # nesting deeper than the JSON parser's recursion limit
        valid[: len(valid) // 2],  # a row cut in the middle (not the last line)
        json.dumps({**_row("v9"), "plan": "0" * 16}).encode(),  # a row of another plan
    ]
    rng = random.Random(seed)
    kinds_made = len(kinds)
    while len(kinds) < kinds_made + damaged_rows:
        damaged = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.choice(b'{}[]":,\x00\xff\\ 0a')
        try:
            doc = json.loads(bytes(damaged).decode("utf-8"))
            still_valid = isinstance(doc, dict) and doc.get("id") and doc.get("status") == "pass"
        except (UnicodeDecodeError, ValueError, RecursionError):
            still_valid = False
        if not still_valid and b"\n" not in damaged:
            kinds.append(bytes(damaged))
    return [k + b"\n" for k in kinds]


def test_fuzz_bad_rows_are_skipped_with_file_line_and_counted_once_by_every_command(tmp_path):
    probes = corruptions = 0
    for round_ in range(ROUNDS):
        base = tmp_path / f"r{round_}"
        good = make_run(base / "a")
        bad = bad_rows(seed=20 + round_)
        corruptions += len(bad)
        mixed = [good[0], *bad[: len(bad) // 2], *good[1:], *bad[len(bad) // 2 :]]
        (base / "a" / "results.jsonl").write_bytes(b"".join(mixed))
        make_run(base / "b")
        commands = {
            "scorecard": ("scorecard", str(base / "a")),
            "diff": ("diff", str(base / "b"), str(base / "a")),
            "merge": ("merge", "--out", str(base / "m"), str(base / "a"), str(base / "b")),
        }
        for name, args in commands.items():
            proc = run_cli(*args)
            probes += 1
            assert proc.returncode == 0, (name, proc.stderr[-3000:])
            line = one_line_error(proc.stderr)
            assert f"skipped {len(bad)} bad row(s) of {base / 'a' / 'results.jsonl'}: " in line, name
            assert "results.jsonl:2: not valid UTF-8" in line
        summary = json.loads((base / "a" / "scorecard.json").read_text())
        assert summary["cells"][0]["counts"] == {"pass": 3}, "the valid rows all count, and only they"
        merged = [json.loads(x) for x in (base / "m" / "results.jsonl").read_text().splitlines()]
        assert len(merged) == 4, "merge keeps each valid row once and no bad one"
    print(f"results.jsonl: {corruptions} bad rows in {probes} probes, 0 tracebacks")


# Generated corruptions of each JSON file a scorecard reads. More rounds (each with new seeds) for a
# longer campaign: PORTABILITY_FUZZ_ROUNDS=20 pytest tests/test_robustness.py -k fuzz
ROUNDS = int(os.environ.get("PORTABILITY_FUZZ_ROUNDS", "1"))


def damaged_documents(text: bytes, rng: random.Random) -> list[bytes]:
    """Whole-file damage: cut short, bytes flipped, another JSON type, bad UTF-8, a NUL, empty."""
    flipped = bytearray(text)
    for _ in range(rng.randint(1, 6)):
        flipped[rng.randrange(len(flipped))] = rng.choice(b'{}[]":,\x00\xff\\ 0a')
    return [
        text[: rng.randrange(1, len(text))],
        bytes(flipped),
        rng.choice([b"[]", b"3", b"null", b'"text"', b"true"]),
        text.replace(b"{", b"\xc3{", 1),
        text.replace(b'"', b'"\x00', 1),
        b"",
    ]


@pytest.mark.parametrize("name", ["plan.json", "run.json", "coverage.json"])
def test_fuzz_run_files_end_in_a_scorecard_or_one_line_never_a_traceback(tmp_path, name):
    probes = 0
    for round_ in range(ROUNDS):
        rng = random.Random(f"{name}:{round_}")
        run = tmp_path / f"r{round_}"
        make_run(run)
        (run / "coverage.json").write_text(json.dumps({"covered": 1, "registered": 2, "uncovered": ["a"]}))
        pristine = (run / name).read_bytes()
        documents = damaged_documents(pristine, rng)
        for damaged in documents if ROUNDS > 1 else rng.sample(documents, 2):
            (run / name).write_bytes(damaged)
            proc = run_cli("scorecard", str(run))
            probes += 1
            assert "Traceback" not in proc.stderr, (damaged, proc.stderr[-3000:])
            if proc.returncode == 2:
                assert one_line_error(proc.stderr).startswith(f"portability: {run / name}:")
            else:
                assert proc.returncode == 0 and (run / "scorecard.md").exists(), damaged
    print(f"{name}: {probes} probes, 0 tracebacks")


def test_plan_entries_that_are_not_cases_are_skipped_and_rows_of_another_plan_refused(tmp_path):
    make_run(tmp_path / "a")
    plan = json.loads((tmp_path / "a" / "plan.json").read_text())
    plan["cases"] += [7, {"id": 1}, {"id": "x", "cell": "torch@cpu", "op": "planted_scale"}]
    plan["fingerprint"] = "0" * 16  # every row now belongs to another plan
    (tmp_path / "a" / "plan.json").write_text(json.dumps(plan))
    proc = run_cli("scorecard", str(tmp_path / "a"))
    assert proc.returncode == 0
    said = [ln for ln in proc.stderr.splitlines() if ln.startswith("portability: ")]
    assert len(said) == 2 and "skipped 2 bad row(s) of" in said[0] and "case 4: not an object" in said[0]
    assert "skipped 4 bad row(s)" in said[1] and "a row of another plan" in said[1]
    assert "**4 planned case(s) were not run**" in (tmp_path / "a" / "scorecard.md").read_text()


def test_merged_shards_of_two_plans_count_every_row_and_diff_needs_something_to_compare(tmp_path):
    make_run(tmp_path / "a")
    make_run(tmp_path / "b", cases=5, versions="2.12.0", plan="b" * 16)  # another machine, another plan
    merged = run_cli("merge", "--out", str(tmp_path / "m"), str(tmp_path / "a"), str(tmp_path / "b"))
    assert merged.returncode == 0 and "skipped" not in merged.stderr, merged.stderr
    assert "shards ran different versions of torch" in merged.stderr
    summary = json.loads((tmp_path / "m" / "scorecard.json").read_text())
    assert summary["cells"][0]["counts"] == {"pass": 5}, "the merged plan's rows, all of them"

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.jsonl").write_text("")
    for args in ((tmp_path / "empty", tmp_path / "a"), (tmp_path / "a", tmp_path / "empty")):
        proc = run_cli("diff", *map(str, args), "--fail-on-regression")
        assert proc.returncode == 2
        assert "no operator results to compare" in one_line_error(proc.stderr)


# --- the writer itself ------------------------------------------------------------------------------


def test_a_writer_of_an_earlier_generation_is_refused(tmp_path):
    from portability.results.lock import RunDirBusy, RunLock
    from portability.results.store import ResultWriter, StaleRun

    first = RunLock.acquire(tmp_path)
    with pytest.raises(RunDirBusy, match=f"pid {os.getpid()}"):
        RunLock.acquire(tmp_path)
    first.release()
    second = RunLock.acquire(tmp_path)  # as a --resume after the first run was killed
    results = tmp_path / "results.jsonl"
    ResultWriter(results, generation=second.generation).append(_row("v1"))
    with pytest.raises(StaleRun):  # an orphaned worker of the first run
        ResultWriter(results, generation=first.generation).append(_row("v2"))
    assert [json.loads(x)["case"] for x in results.read_text().splitlines()] == ["v1"]
    second.release()


WRITE_PAST_LIMIT = """
import json, resource, signal, sys
from portability.results.store import ResultWriter, ResultsUnwritable
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of death at the file size limit
path, limit = sys.argv[1], int(sys.argv[2])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
row = {"id": "big", "kind": "cell", "cell": "c", "status": "pass", "reason": "x" * 5000}
try:
    ResultWriter(path).append(row)
except ResultsUnwritable as exc:
    print(exc)
"""


def test_a_row_that_does_not_fit_is_not_written_at_all(tmp_path):
    """A file size limit (RLIMIT_FSIZE) makes the write short, then fail: the partial row must go."""
    results = tmp_path / "results.jsonl"
    results.write_bytes(json.dumps(_row("v1")).encode() + b"\n" + b'{"id": "torn')  # a torn last line too
    limit = results.stat().st_size + 4096
    proc = subprocess.run(
        [sys.executable, "-c", WRITE_PAST_LIMIT, str(results), str(limit)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0 and "a result row could not be written: File too large" in proc.stdout, proc
    assert results.read_bytes() == json.dumps(_row("v1")).encode() + b"\n", "cut back to the last whole row"
