"""Many machines and pull requests: ci-matrix (and the nox sessions it names), changed-ops, merging shards
without losing anything (plans, run metadata, a shard cut short, a shard that never arrived), the diff
against the base branch (the PR comment), and the workflow files under a real schema validator."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, run_cut_short, write_run_dir

from portability.results.store import ResultWriter, read_results
from portability.scorecard.safe_text import md_text

GPU_SHARD = ROOT / "docs" / "scorecards" / "h100-faults-2026-11-24"
H100 = ROOT / "docs" / "scorecards" / "h100-2026-11-24" / "results.jsonl"
SWEEP = ROOT / "docs" / "scorecards" / "h100-sweep-dealt-2026-11-25"  # the whole catalog on an H100
PLANTED = {"PORTABILITY_SPECS": "tests/fault_adapters/specs.py"}
REUSABLE = ROOT / ".github" / "workflows" / "portability-matrix.yml"
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml")) + sorted(
    (ROOT / "examples" / "callers").glob("*.yml")
)


def test_ci_matrix_lists_every_declared_cell_with_its_runner_label_and_nox_session(cli):
    proc = cli("ci-matrix")
    assert proc.returncode == 0, proc.stderr
    cells = {c["cell"]: c for c in json.loads(proc.stdout)["include"]}
    assert {"torch@cpu", "flaggems@cuda", "inductor@npu"} <= set(cells)
    assert cells["flaggems@cuda"]["runner"] == "portability-cuda"
    assert cells["torch@cpu"]["runner"] == "ubuntu-latest"
    assert cells["flaggems@cuda"]["session"] == "matrix-flaggems-cuda"

    proc = cli("ci-matrix", "--cells", "flaggems@cuda,torch@cpu", "--runners", "cuda=hopper")
    assert proc.returncode == 0, proc.stderr
    chosen = {c["cell"]: c["runner"] for c in json.loads(proc.stdout)["include"]}
    assert chosen == {"flaggems@cuda": "hopper", "torch@cpu": "ubuntu-latest"}

    for bad in (["--cells", "flaggems@tpu"], ["--runners", "cuda"]):
        proc = cli("ci-matrix", *bad)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr and bad[1].split("=")[0] in proc.stderr


def test_every_session_ci_matrix_names_exists_in_nox(tmp_path, cli):
    """The workflow runs `nox -s <session>` for each cell ci-matrix emits: a pinned device (`cuda:1`) must
    name the session noxfile.py really defines (`matrix-torch-cuda_1`). nox lists the sessions of a copy
    of noxfile.py beside a matrix.yaml that declares pinned devices."""
    pytest.importorskip("nox", reason="nox is not installed (it is in the dev extra: pip install -e .[dev])")
    shutil.copy(ROOT / "noxfile.py", tmp_path / "noxfile.py")
    matrix = tmp_path / "matrix.yaml"
    matrix.write_text(
        "backends:\n"
        "  torch: {adapter: torch, devices: [cpu, 'cuda:1'], dtypes: [fp32]}\n"
        "  flaggems: {adapter: flaggems, devices: ['npu:0'], dtypes: [bf16]}\n"
    )
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "-l", "-f", str(tmp_path / "noxfile.py")],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    nox_sessions = {line.split()[1] for line in listed.stdout.splitlines() if line[:2] in ("* ", "- ")}
    proc = cli("ci-matrix", "--matrix", str(matrix))
    assert proc.returncode == 0, proc.stderr
    emitted = {c["session"] for c in json.loads(proc.stdout)["include"]}
    assert emitted == {"matrix-torch-cpu", "matrix-torch-cuda_1", "matrix-flaggems-npu_0"}
    assert emitted <= nox_sessions, nox_sessions


def test_workflows_and_example_callers_pass_githubs_workflow_schema(tmp_path):
    if importlib.util.find_spec("check_jsonschema") is None:
        pytest.skip("check-jsonschema is not installed (it is in the dev extra: pip install -e .[dev])")
    check = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
    assert REUSABLE in WORKFLOWS and len(WORKFLOWS) >= 4
    proc = subprocess.run([*check, *map(str, WORKFLOWS)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = tmp_path / "broken.yml"  # the validator does reject a workflow GitHub would reject
    broken.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps: {run: true}\n")
    assert subprocess.run([*check, str(broken)], capture_output=True, check=False).returncode == 1


def test_callers_pass_only_the_inputs_the_reusable_workflow_declares():
    inputs = yaml.safe_load(REUSABLE.read_text())[True]["workflow_call"]["inputs"]  # YAML 1.1: `on` is True
    assert all(spec.get("description") for spec in inputs.values()), "every input is documented"
    callers = 0
    for path in WORKFLOWS:
        for job in (yaml.safe_load(path.read_text()).get("jobs") or {}).values():
            if str(job.get("uses", "")).split("@")[0].endswith("/workflows/portability-matrix.yml"):
                callers += 1
                assert set(job.get("with") or {}) <= set(inputs), path
                kind = (job.get("with") or {}).get(
                    "system-under-test", inputs["system-under-test"]["default"]
                )
                assert kind in ("flaggems", "vllm-plugin-fl", "matrix"), path
    assert callers == 3  # this repository's portability.yml, FlagGems', vllm-plugin-FL's


def _git(repo, *args: str) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=True,
        env={**env, "HOME": str(repo)},
    ).stdout.strip()


def _commit(repo, files: dict[str, str]) -> str:
    for path, text in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(text)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "change")
    return _git(repo, "rev-parse", "HEAD")


def test_changed_ops_derives_the_operators_of_a_flaggems_pull_request(tmp_path, cli):
    """A FlagGems-shaped repository in git: a pull request that edits ops/softmax.py, adds a registration
    of `add` and a new module ops/logit_backward.py that no catalog spec exercises."""
    from portability.catalog import load_catalog

    repo = tmp_path / "FlagGems"
    repo.mkdir()
    _git(repo, "init", "-q")
    registry = '_FULL_CONFIG = (\n    ("softmax", softmax),\n{}\n)\n'
    base = _commit(
        repo,
        {
            "src/flag_gems/__init__.py": registry.format(""),
            "src/flag_gems/ops/__init__.py": "from .softmax import softmax\n",
            "src/flag_gems/ops/softmax.py": "def softmax(x, dim):\n    return x\n",
            "src/flag_gems/ops/add.py": "def add(a, b):\n    return a\n",
            "src/flag_gems/utils/shape_utils.py": "X = 1\n",
            "README.md": "FlagGems\n",
        },
    )
    _commit(
        repo,
        {
            "src/flag_gems/__init__.py": registry.format(
                '    ("add.Tensor", add),\n    ("logit_backward", logit_backward),'
            ),
            "src/flag_gems/ops/__init__.py": "from .softmax import softmax\n"
            "from .logit_backward import logit_backward\n",
            "src/flag_gems/ops/softmax.py": "def softmax(x, dim):\n    return x * 1\n",
            "src/flag_gems/ops/logit_backward.py": "def logit_backward(g, x):\n    return g\n",
            "README.md": "FlagGems, with logit_backward\n",
        },
    )
    proc = cli("changed-ops", "--source", str(repo), "--base", base)
    assert proc.returncode == 0, proc.stderr
    ops = proc.stdout.strip().split(",")
    catalog = load_catalog()
    assert {"softmax", "add"} <= set(ops) and "mm" not in ops
    assert all({"softmax", "add", "logit_backward"} & set(catalog[op].flaggems) for op in ops)
    assert "logit_backward" in proc.stderr and "src/flag_gems/ops/logit_backward.py" in proc.stderr

    shared = _commit(repo, {"src/flag_gems/utils/shape_utils.py": "X = 2\n"})
    proc = cli("changed-ops", "--source", str(repo), "--base", f"{shared}~1")
    assert (proc.returncode, proc.stdout.strip()) == (0, "all"), proc.stderr
    assert "src/flag_gems/utils/shape_utils.py" in proc.stderr

    docs = _commit(repo, {"README.md": "only docs\n"})
    proc = cli("changed-ops", "--source", str(repo), "--base", f"{docs}~1")
    assert (proc.returncode, proc.stdout.strip()) == (0, "none"), proc.stderr

    proc = cli("changed-ops", "--source", str(repo), "--base", "no-such-commit")
    assert (
        proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    )


def _not_run_in(markdown: str) -> int:
    words = markdown.split(" planned case(s) were not run")[0].split("**")[-1]
    return int(words)


def test_merge_keeps_plans_a_cut_short_shard_and_a_missing_one_as_not_run(tmp_path, cli):
    """Two cells on two 'machines': torch@cpu runs to the end, eager@cpu is killed mid-run (a real run,
    SIGKILL), and a third expected cell, torch@cuda, never uploads. The merged scorecard and diff name
    the unrun cases exactly as the cut-short shard's own scorecard does, and the missing cell as not run."""
    matrix = (
        "backends:\n  {name}: {{adapter: torch, devices: [cpu], dtypes: [fp32]}}\n"
        "operators: {{include: [planted_work]}}\n"
    )
    fast, slow = tmp_path / "fast.yaml", tmp_path / "slow.yaml"
    fast.write_text(
        matrix.format(name="torch") + "perf: {warmup: 1, repetitions: 3, budget_s: 0.01, timeout_s: 60}\n"
    )
    # each case times for 0.5 s: the kill lands while cases remain, even on 2 busy cores
    slow.write_text(
        matrix.format(name="eager") + "perf: {warmup: 1, repetitions: 100000, budget_s: 0.5, timeout_s: 60}\n"
    )
    done, cut = tmp_path / "shard-torch", tmp_path / "shard-eager"
    proc = cli("run", "--matrix", str(fast), "--no-serving", "--out", str(done), env=PLANTED)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run_cut_short(["--matrix", str(slow), "--no-serving"], cut, op_rows=2, env=PLANTED)
    planned_cut = {c["id"] for c in json.loads((cut / "plan.json").read_text())["cases"]}
    ran_cut = {r["id"] for r in read_results(cut) if r["kind"] == "op"}
    assert 0 < len(ran_cut) < len(planned_cut) and not (cut / "run.json").exists()
    assert cli("scorecard", str(cut)).returncode == 0
    alone = _not_run_in((cut / "scorecard.md").read_text())  # what one machine says of its own cut run
    assert alone == len(planned_cut - ran_cut)

    merged = tmp_path / "merged"
    proc = cli(
        "merge",
        str(done),
        str(cut),
        "--expected-cells",
        "torch@cpu,eager@cpu,torch@cuda",
        "--out",
        str(merged),
    )
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((merged / "plan.json").read_text())
    planned_done = {c["id"] for c in json.loads((done / "plan.json").read_text())["cases"]}
    assert {c["id"] for c in plan["cases"]} == planned_done | planned_cut
    md = (merged / "scorecard.md").read_text()
    assert _not_run_in(md) == alone
    cuda_row = next(line for line in md.splitlines() if line.startswith(f"| {md_text('torch@cuda')}"))
    assert "not run: no shard arrived" in cuda_row
    report = json.loads((merged / "merge.json").read_text())
    assert report["missing_cells"] == ["torch@cuda"]
    assert report["shards_without_run_info"] == [str(cut)]
    assert "torch@cuda" in proc.stderr and "not run" in proc.stderr
    run = json.loads((merged / "run.json").read_text())
    assert [s["shard"] for s in run["shards"]] == [str(done), str(cut)] and run["shards"][1]["cut_short"]

    comment = cli("diff", str(merged), str(merged)).stdout
    assert f"**{alone} case(s) not run, 1 whole cell(s)**" in comment.splitlines()[3]
    assert f"{md_text('eager@cpu')}: {alone} planned case(s) not run" in comment
    assert f"{md_text('torch@cuda')}: no shard arrived" in comment
    single = cli("diff", str(cut), str(cut)).stdout  # the same cut run on one machine, not merged
    assert f"**{alone} case(s) not run**" in single.splitlines()[3]


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
        "--no-serving",
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
    # the shards ran different torch builds: said, not hidden
    torch_versions = json.loads((merged / "merge.json").read_text())["version_mismatches"]["torch"]
    cpu_torch = next(r for r in read_results(cpu) if r["kind"] == "cell")["versions"]["torch"]
    assert torch_versions == {cpu_torch: [str(cpu)], "2.11.0+cu130": [str(GPU_SHARD)]}
    assert "different versions" in proc.stderr and "2.11.0+cu130" in proc.stderr
    plans = [json.loads((d / "plan.json").read_text())["cases"] for d in (cpu, GPU_SHARD)]
    assert len(json.loads((merged / "plan.json").read_text())["cases"]) == sum(map(len, plans))


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
    assert md.splitlines()[3].startswith("**2 regression(s)** · 1 improvement(s) · ")
    regressions = md.split("### Regressions")[1].split("### Improvements")[0]
    assert "pass → fail" in regressions and "speedup" in regressions
    assert md_text(noisy, 120) not in md  # a change within the measured noise is not reported
    assert md_text(broke, 120) in regressions and md_text(drop, 120) in regressions
    scorecard = md.split("<details><summary>Full scorecard of this run</summary>")[1]
    assert "### Operators × cells" in scorecard  # the grid, inside the collapsed scorecard
    assert cli("diff", str(base), str(base), "--fail-on-regression").returncode == 0


def test_diff_compares_only_what_the_head_planned(tmp_path, cli):
    """A pull request that ran only the operators it touches (operators: changed) is not charged with the
    base's other operators; a case of those operators that the head no longer plans is a coverage drop."""
    base_rows = read_results(H100)
    op = next(r["op"] for r in base_rows if r["kind"] == "op" and r["status"] == "pass")
    touched = [r for r in base_rows if r["kind"] == "op" and r["op"] == op]
    dropped, kept = touched[0], touched[1:]
    planned = [{k: r[k] for k in ("id", "cell", "backend", "device", "op", "case", "dtype")} for r in kept]
    cells = [r for r in base_rows if r["kind"] == "cell"]
    head = write_run_dir(tmp_path / "head", cells + kept, planned)
    md = cli("diff", str(H100), str(head)).stdout
    assert md.splitlines()[3].startswith("**1 regression(s)** · 0 improvement(s) · 0 newly covered"), md[:600]
    regressions = md.split("### Regressions")[1]
    assert md_text(dropped["id"], 120) in regressions and "coverage drop" in regressions
    assert len(base_rows) - len(cells) > 10 * len(touched)  # the base's other operators: not compared


def _pull_request_head(base_rows: list[dict], base_coverage: dict) -> dict[str, list]:
    """A head run built from a real whole-catalog run's rows: some passing cases fail (long reasons),
    some failing ones pass, some planned cases never ran, new operators pass, and FlagGems registers new
    overloads that no case exercises. Returns the head's rows, plan and coverage, and what was changed."""
    rows: list[dict] = []
    planned: list[dict] = []
    changed: dict[str, list] = {"regressed": [], "fixed": [], "not_run": [], "new_ops": []}
    ops = [r for r in base_rows if r["kind"] == "op"]
    for i, r in enumerate(ops):
        r = dict(r)
        planned.append({k: r[k] for k in ("id", "cell", "backend", "device", "op", "case", "dtype")})
        if i % 13 == 5:
            changed["not_run"].append(r["id"])
            continue
        if r["status"] == "pass" and i % 7 == 0:
            changed["regressed"].append(r["id"])
            r.update(status="fail", reason="mismatch " + "x" * 300)
        elif r["status"] == "fail":
            changed["fixed"].append(r["id"])
            r.update(status="pass", reason=None)
        rows.append(r)
    template = next(r for r in ops if r["status"] == "pass")
    for i in range(400):
        op = f"aten.planted_new_op_{i:03d}"
        row = {
            **template,
            "op": op,
            "id": f"{template['cell']}::{op}::{template['case']}::{template['dtype']}",
        }
        changed["new_ops"].append(op)
        rows.append(row)
        planned.append({k: row[k] for k in ("id", "cell", "backend", "device", "op", "case", "dtype")})
    new_overloads = [f"planted_new_overload_{i}.Tensor" for i in range(300)]
    coverage = {**base_coverage, "uncovered": [*base_coverage["uncovered"], *new_overloads]}
    cells = [r for r in base_rows if r["kind"] == "cell"]
    passing_ops = [{r["op"] for r in rs if r["kind"] == "op" and r["status"] == "pass"} for rs in (ops, rows)]
    changed["newly_covered"] = sorted(passing_ops[1] - passing_ops[0])  # new operators, and fixed ones
    return {
        "rows": cells + rows,
        "planned": planned,
        "coverage": coverage,
        **changed,
        "new_overloads": new_overloads,
    }


def test_the_comment_on_two_whole_catalog_runs_is_verdict_first_and_fits_64_kb(tmp_path, cli):
    base_rows = read_results(SWEEP)
    base_coverage = json.loads((SWEEP / "coverage.json").read_text())
    head = _pull_request_head(base_rows, base_coverage)
    assert len(base_rows) > 3000 and len(head["rows"]) > 3000
    base = write_run_dir(tmp_path / "base", base_rows, coverage=base_coverage)
    new = write_run_dir(tmp_path / "head", head["rows"], head["planned"], head["coverage"])
    proc = cli("diff", str(base), str(new))
    md = proc.stdout
    assert proc.returncode == 0 and len(md.encode()) <= 64 * 1024, len(md.encode())
    verdict = md.splitlines()[3]
    assert verdict.startswith(
        f"**{len(head['regressed'])} regression(s)** · {len(head['fixed'])} improvement(s) · "
    )
    assert f"**{len(head['not_run'])} case(s) not run**" in verdict
    assert set(head["new_ops"]) <= set(head["newly_covered"])
    assert f"{len(head['newly_covered'])} newly covered operator(s)" in verdict
    assert f"**{len(head['new_overloads'])} overload(s) registered by this pull request" in verdict
    sections = [
        "### Regressions",
        "### Improvements",
        "### Not run",
        "### Newly covered operators",
        "### Registered by this pull request, exercised by no case",
        "<details><summary>Full scorecard of this run</summary>",
    ]
    at = [md.index(s) for s in sections]
    assert at == sorted(at), "verdict, changed rows, the lists, then the grid collapsed"
    # 455 regressions over 276 operators: the grid of even those does not fit, and the comment says so
    assert "operators with a regression" in md and "left out to fit a PR comment" in md
    shown = md.split("### Regressions")[1].split("### Improvements")[0].count("pass → fail")
    assert (
        50 < shown < len(head["regressed"]) and f"… {len(head['regressed']) - shown} more regressions" in md
    )
