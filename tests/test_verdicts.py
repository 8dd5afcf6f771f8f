"""Verdicts that never overclaim (issue #16), through the real command line with real misbehaving
adapters (tests/fault_adapters/): a backend whose route reaches none of its code is `fallback`, never
`pass`; one that overrides the CPU kernels of add/copy_/abs cannot change its own verdict; a failure that
passes on a re-run is `flaky`; a raising probe is a cell that could not start; the headline and the exit
code count all of it."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT

from portability.cli.run import run_exit_code
from portability.results.store import latest_by_id
from portability.scorecard.safe_text import md_text

SPECS = {"PORTABILITY_SPECS": "tests/fault_adapters/verdict_specs.py"}
ADAPTERS = {
    "routesnothing": "routes_nothing.py:RoutesNothingAdapter",
    "harnessops": "harness_ops.py:HarnessOpsAdapter",
    "flaky": "flaky.py:FlakyAdapter",
    "raisingprobe": "raising_probe.py:RaisingProbeAdapter",
}


def write_matrix(tmp_path: Path, backends: dict[str, str], ops: str = "[v_add, v_abs]") -> Path:
    lines = ["version: 1", "backends:", "  torch: {adapter: torch, devices: [cpu], dtypes: [fp32]}"]
    for name, target in backends.items():
        options = f", options: {{state_dir: '{tmp_path}'}}" if name == "flaky" else ""
        adapter = ROOT / "tests" / "fault_adapters" / target
        lines.append(f"  {name}: {{adapter: '{adapter}', devices: [cpu], dtypes: [fp32]{options}}}")
    lines += [
        f"operators: {{include: {ops}}}",
        "perf: {warmup: 1, repetitions: 3, budget_s: 0.1, timeout_s: 60}",
    ]
    path = tmp_path / "matrix.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def latest_rows(out: Path) -> dict[tuple[str, str], dict]:
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return {(r["backend"], r.get("op", "cell")): r for r in latest_by_id(rows).values()}


def test_routing_harness_isolation_flaky_and_dead_cells_are_all_counted(tmp_path, cli):
    out = tmp_path / "run"
    matrix = write_matrix(tmp_path, ADAPTERS)
    proc = cli("run", "--matrix", str(matrix), "--out", str(out), "--no-serving", env=SPECS)
    assert proc.returncode == 1, proc.stderr[-3000:]  # failures found
    rows = latest_rows(out)

    # torch is the baseline: its own code by definition
    assert rows["torch", "v_add"]["status"] == rows["torch", "v_abs"]["status"] == "pass"
    # a route that reaches none of the backend's kernels: fallback, with the reason, and no speedup
    for op in ("v_add", "v_abs"):
        row = rows["routesnothing", op]
        assert row["status"] == "fallback" and row["routing"] == "none", row
        assert "ran native torch, not routesnothing" in row["reason"] and "speedup" not in row
    # the backend overrides aten add/abs/copy_ on the CPU: its correct add passes (the harness's copies and
    # comparisons ran outside its route), its wrong abs fails, twice (a deterministic failure)
    add, abs_ = rows["harnessops", "v_add"], rows["harnessops", "v_abs"]
    assert add["status"] == "pass" and add["routing"] == "launches", add
    assert abs_["status"] == "fail" and [a["status"] for a in abs_["attempts"]] == ["fail", "fail"], abs_
    # an error on the first attempt, a pass in a fresh worker: flaky, both outcomes kept
    for op in ("v_add", "v_abs"):
        row = rows["flaky", op]
        assert row["status"] == "flaky", row
        assert [a["status"] for a in row["attempts"]] == ["error", "pass"]
        assert "first launch fails" in row["attempts"][0]["reason"]
    assert rows["raisingprobe", "cell"]["status"] == "error"

    md = (out / "scorecard.md").read_text()
    assert "All " not in md.split("### Cells")[0]
    assert "**3 failing case(s).**" in md  # harnessops' abs, flaky's two cases
    assert "**2 other case(s) did not pass:** 2 fallback (ran native torch" in md
    assert f"**1 cell(s) could not start:** {md_text('raisingprobe@cpu')}" in md, md[:1500]
    assert "↩" in md and "~" in md
    assert f"Declared operators whose own code ran: {md_text('routesnothing@cpu')} 0 of 2." in md
    summary = {c["cell"]: c for c in json.loads((out / "scorecard.json").read_text())["cells"]}
    assert summary["routesnothing@cpu"]["own_code"] == {"declared": 2, "exercised": 0}
    assert summary["harnessops@cpu"]["own_code"] == {"declared": 2, "exercised": 2}
    assert summary["routesnothing@cpu"]["geomean_speedup"] is None
    # --fail-on: wrong results only still fails (abs, flaky); never always passes
    assert run_exit_code(out, "fail") == 1
    assert run_exit_code(out, "never") == 0


def test_fallback_alone_exits_0_by_default_and_1_with_fail_on_any(tmp_path, cli):
    out = tmp_path / "run"
    matrix = write_matrix(tmp_path, {"routesnothing": ADAPTERS["routesnothing"]}, ops="[v_add]")
    args = ("run", "--matrix", str(matrix), "--out", str(out), "--no-serving", "--backends", "routesnothing")
    proc = cli(*args, "--fail-on", "any", env=SPECS)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert run_exit_code(out, "error") == 0  # nothing failing: fallback is not a failure...
    md = (out / "scorecard.md").read_text()
    assert "**1 other case(s) did not pass:** 1 fallback" in md  # ...nor a pass


def test_lost_device_is_infrastructure_exit_3(tmp_path, cli):
    out = tmp_path / "run"
    matrix = write_matrix(tmp_path, {"devicelost": "infra.py:DeviceLostAdapter"}, ops="[v_add]")
    args = ("--matrix", str(matrix), "--backends", "devicelost", "--no-serving")
    proc = cli("run", *args, "--out", str(out), env=SPECS)
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "exit code 3" in proc.stderr


def test_bad_fail_on_is_a_usage_error(cli):
    proc = cli("run", "--out", "/nonexistent", "--fail-on", "sometimes")
    assert proc.returncode == 2 and "invalid choice: 'sometimes'" in proc.stderr


def test_padding_bug_in_softmax_fails_on_the_masked_tail_cases(tmp_path, cli):
    """A softmax padding its block's masked lanes with 0 instead of -inf: invisible on logits in
    [-20, 20] (the max dwarfs the pad), caught by the masked-tail cases of kernels/qwen3/reduction.py."""
    out = tmp_path / "run"
    matrix = write_matrix(
        tmp_path, {"paddingsoftmax": "padding_softmax.py:PaddingSoftmaxAdapter"}, "[softmax]"
    )
    args = ("--backends", "paddingsoftmax", "--dtypes", "fp32", "--reruns", "0", "--no-serving")
    proc = cli("run", "--matrix", str(matrix), "--out", str(out), *args)
    assert proc.returncode == 1, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    status = {r["case"]: r["status"] for r in rows if r["kind"] == "op"}
    assert status["logits 8x151936"] == "pass"  # why the old inputs let the bug through
    failing = {case for case, s in status.items() if s == "fail"}
    assert {"masked tail 33x65", "log-probs 17x129", "block tail 3x65537"} <= failing, status


def test_empty_and_tiny_cases_stay_out_of_speedups():
    from portability.scorecard.summary import MIN_SPEEDUP_INPUT_BYTES, summarize

    def row(case: str, input_bytes: int, speedup: float) -> dict:
        ident = {
            "id": f"x@cpu::op/{case}::fp32",
            "kind": "op",
            "cell": "x@cpu",
            "backend": "x",
            "device": "cpu",
        }
        return ident | {"op": "op", "case": case, "dtype": "fp32", "status": "pass", "speedup": speedup,
                        "input_bytes": input_bytes}  # fmt: skip

    rows = [row("empty", 0, 50.0), row("tiny", MIN_SPEEDUP_INPUT_BYTES - 1, 9.0), row("real", 1 << 20, 0.5)]
    data = summarize(rows)
    assert data["cells"][0]["geomean_speedup"] == 0.5 and data["cells"][0]["faster_than_native"] == 0.0
    assert data["grid"]["op"]["x@cpu"]["geomean_speedup"] == 0.5


def test_each_qwen3_spec_family_states_the_bug_classes_it_exercises():
    from portability.catalog import load_catalog
    from portability.spec import BUG_CLASSES

    catalog = load_catalog()
    for name in ("softmax", "log_softmax", "sum_dim", "argmax", "rms_norm", "silu", "add", "mul"):
        assert catalog[name].exercises, f"{name} names no bug class"
    for spec in catalog.values():
        assert set(spec.exercises) <= set(BUG_CLASSES), (spec.name, spec.exercises)
