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
from pathlib import Path

import pytest
from conftest import one_line_error, processes_with_env, run_cli, start_cli, wait_for

from portability.results.lock import GENERATION_ENV

SPECS = {"PORTABILITY_SPECS": "tests/fault_adapters/specs.py"}
# Two fast cases on torch, then two that hang until the case timeout: a run that is reliably still
# going when the signal lands, with rows already written. `--resume --case-timeout 1` finishes it.
HANGING = (
    "backends:\n  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}\n"
    "  hang: {adapter: 'tests/fault_adapters/hang.py:HangAdapter', devices: [cpu], dtypes: [fp32]}\n"
    "operators: {include: [planted_scale]}\n"
    "perf: {warmup: 1, repetitions: 3, budget_s: 0.05, timeout_s: 600}\n"
)


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]


def op_ids(out: Path) -> list[str]:
    return [r["id"] for r in rows_of(out) if r["kind"] == "op"]


def planned(out: Path) -> set[str]:
    return {c["id"] for c in json.loads((out / "plan.json").read_text())["cases"]}


def start_hanging_run(tmp_path: Path) -> tuple[subprocess.Popen, Path, str]:
    """A run that has written the torch cell's rows and is stuck in the hang cell; its generation."""
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(HANGING)
    out = tmp_path / "run"
    proc = start_cli("run", "--matrix", str(matrix), "--out", str(out), env=SPECS)
    wait_for(lambda: any((out / "logs").glob("hang_cpu.*.inflight")), what="the hang cell's first case")
    generation = json.loads((out / "run.lock").read_text())["generation"]
    assert processes_with_env(GENERATION_ENV, generation), "the pytest session and its worker run"
    return proc, out, generation


def resume(out: Path) -> subprocess.CompletedProcess[str]:
    args = ("--matrix", str(out.parent / "matrix.yaml"), "--out", str(out), "--resume", "--case-timeout", "2")
    return run_cli("run", *args, env=SPECS)


def assert_resumed_whole(out: Path, before: list[dict]) -> None:
    after = rows_of(out)
    assert after[: len(before)] == before, "rows written before the interrupt are kept as they were"
    ids = op_ids(out)
    assert len(ids) == len(set(ids)), "no case recorded twice"
    assert set(ids) == planned(out), "no case lost"
    statuses = {r["op"] + r["cell"]: r["status"] for r in after if r["kind"] == "op"}
    assert set(statuses.values()) == {"pass", "timeout"}


def test_sigterm_stops_every_process_keeps_rows_says_interrupted_and_resume_completes(tmp_path):
    proc, out, generation = start_hanging_run(tmp_path)

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


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGHUP], ids=["kill-9-parent", "sighup"])
def test_the_death_of_the_parent_ends_its_workers_and_resume_loses_and_duplicates_nothing(tmp_path, sig):
    proc, out, generation = start_hanging_run(tmp_path)
    os.kill(proc.pid, sig)  # the parent alone: its pytest session and worker are in their own group
    proc.communicate(timeout=60)
    assert proc.returncode == (-sig if sig == signal.SIGKILL else 128 + sig)
    wait_for(lambda: not processes_with_env(GENERATION_ENV, generation), 10, "every worker to end")
    before = rows_of(out)
    resumed = resume(out)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert_resumed_whole(out, before)


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs (root and mount(8) needed: skipped otherwise); grown to 4 MiB by calling it."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if not shutil.which("mount"):
        pytest.skip("no mount(8): cannot make a small filesystem")
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True, check=False
    )
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (root needed): {made.stderr.decode().strip()[:120]}")

    def grow() -> None:
        subprocess.run(["mount", "-o", "remount,size=4m", str(mnt)], check=True)

    try:
        yield mnt, grow
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_a_full_disk_stops_the_run_in_one_line_keeps_every_row_and_resume_runs_the_rest(tmp_path, small_disk):
    mnt, grow = small_disk
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

    grow()
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


def make_run(path: Path, cases: int = 3, versions: str = "2.13.0") -> list[bytes]:
    """A valid run directory (rows, plan.json, run.json); returns its result lines."""
    path.mkdir(parents=True)
    cell = {"id": "cell:torch@cpu", "kind": "cell", "cell": "torch@cpu", "status": "pass", "plan": PLAN}
    cell["versions"] = {"torch": versions}
    rows = [cell] + [_row(f"v{i}", versions={"torch": versions}) for i in range(cases)]
    lines = [json.dumps(r).encode() + b"\n" for r in rows]
    (path / "results.jsonl").write_bytes(b"".join(lines))
    plan = {
        "fingerprint": PLAN,
        "cases": [{"id": r["id"], "cell": r["cell"], "op": r["op"]} for r in rows[1:]],
    }
    (path / "plan.json").write_text(json.dumps(plan))
    (path / "run.json").write_text(json.dumps({"command": "portability run", "wall_s": 1.0}))
    return lines


def bad_rows(seed: int = 20) -> list[bytes]:
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
    while len(kinds) < 18 + seed:
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


def test_bad_rows_are_skipped_with_file_line_and_counted_once_by_every_command(tmp_path):
    good = make_run(tmp_path / "a")
    bad = bad_rows()
    mixed = [good[0], *bad[: len(bad) // 2], *good[1:], *bad[len(bad) // 2 :]]
    (tmp_path / "a" / "results.jsonl").write_bytes(b"".join(mixed))
    make_run(tmp_path / "b")
    probes = {
        "scorecard": ("scorecard", str(tmp_path / "a")),
        "diff": ("diff", str(tmp_path / "b"), str(tmp_path / "a")),
        "merge": ("merge", "--out", str(tmp_path / "m"), str(tmp_path / "a"), str(tmp_path / "b")),
    }
    for name, args in probes.items():
        proc = run_cli(*args)
        assert proc.returncode == 0, (name, proc.stderr[-3000:])
        line = one_line_error(proc.stderr)
        assert f"skipped {len(bad)} bad row(s) of {tmp_path / 'a' / 'results.jsonl'}: " in line, name
        assert f"results.jsonl:{2}: not valid UTF-8" in line
    summary = json.loads((tmp_path / "a" / "scorecard.json").read_text())
    assert summary["cells"][0]["counts"] == {"pass": 3}, "the valid rows all count, and only they"


@pytest.mark.parametrize(
    "name, content",
    [
        ("plan.json", b"\xff{}"),
        ("plan.json", b'{"cases": [1, 2'),
        ("plan.json", b"[]"),
        ("plan.json", b'{"cases": "x\x00"}'),
        ("run.json", b""),
        ("run.json", b"3"),
        ("coverage.json", b'{"covered": 1'),
    ],
)
def test_a_run_file_that_is_not_a_json_object_is_refused_in_one_line(tmp_path, name, content):
    make_run(tmp_path / "a")
    (tmp_path / "a" / name).write_bytes(content)
    proc = run_cli("scorecard", str(tmp_path / "a"))
    assert proc.returncode == 2
    assert one_line_error(proc.stderr).startswith(f"portability: {tmp_path / 'a' / name}:")


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


def test_merge_names_shards_whose_versions_differ_and_diff_needs_something_to_compare(tmp_path):
    make_run(tmp_path / "a")
    make_run(tmp_path / "b", versions="2.12.0")
    merged = run_cli("merge", "--out", str(tmp_path / "m"), str(tmp_path / "a"), str(tmp_path / "b"))
    assert merged.returncode == 0
    line = one_line_error(merged.stderr)
    assert (
        "torch@cpu ran with different versions" in line and "torch 2.13.0" in line and "torch 2.12.0" in line
    )

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.jsonl").write_text("")
    for args in ((tmp_path / "empty", tmp_path / "a"), (tmp_path / "a", tmp_path / "empty")):
        proc = run_cli("diff", *map(str, args), "--fail-on-regression")
        assert proc.returncode == 2
        assert "no operator results to compare" in one_line_error(proc.stderr)


def test_resume_refuses_another_plan_and_skips_bad_rows(tmp_path):
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "backends:\n  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}\n"
        "operators: {include: [planted_scale]}\n"
        "perf: {warmup: 1, repetitions: 3, budget_s: 0.02, timeout_s: 60}\n"
    )
    out = tmp_path / "run"
    first = run_cli("run", "--matrix", str(matrix), "--out", str(out), "--ops", "planted_scale", env=SPECS)
    assert first.returncode == 0, first.stderr[-3000:]
    rows = (out / "results.jsonl").read_bytes().splitlines(keepends=True)
    damaged = [rows[0], b"[1, 2]\n", *rows[1:-1], b"\xff\xff\n"]  # the last case's row is lost
    (out / "results.jsonl").write_bytes(b"".join(damaged))

    other = run_cli(
        "run", "--matrix", str(matrix), "--out", str(out), "--resume", "--ops", "planted_many", env=SPECS
    )
    assert other.returncode == 2
    assert "plans other cases than the run in" in one_line_error(other.stderr)

    again = run_cli("run", "--matrix", str(matrix), "--out", str(out), "--resume", env=SPECS)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "skipped 2 bad row(s)" in again.stderr and "Traceback" not in again.stderr
    good = [json.loads(x) for x in (out / "results.jsonl").read_bytes().splitlines() if x.startswith(b"{")]
    ids = [r["id"] for r in good if r["kind"] == "op"]
    assert sorted(ids) == sorted(planned(out)), "the lost case ran again, once"
