"""A longer fuzz campaign over the files `portability scorecard`, `merge` and `diff` read, than the test
suite affords (tests/test_robustness.py runs the same generators through the CLI subprocess, a few probes
each). Here each probe calls the CLI's `main()` in this process (the same code, minus Python's start-up),
so thousands fit in a minute. Prints the counts; exits 1 if any probe raised (a traceback) or broke the
contract (exit code other than 0/2, a 2 without exactly one error line besides the `skipped N bad row(s)`
warnings, valid rows lost or counted twice).

    PYTHONPATH=. python tools/fuzz-run-files.py [ROUNDS]
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import sys
import tempfile
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from test_robustness import bad_rows, damaged_documents, make_run  # noqa: E402

from portability.cli import main  # noqa: E402
from portability.results import store  # noqa: E402


def probe(*args: str) -> tuple[int | None, str]:
    """(exit code or None if it raised, stderr)."""
    store._WARNED.clear()  # each probe stands for a new process: the warning is said once per process
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            return main(list(args)), err.getvalue()
        except SystemExit as exc:
            return int(exc.code or 0), err.getvalue()
        except BaseException:
            return None, err.getvalue() + traceback.format_exc()


def run(rounds: int) -> int:
    counts = {"probes": 0, "bad rows": 0, "tracebacks": 0, "contract broken": 0, "rows lost or twice": 0}
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(rounds):
            base = Path(tmp) / f"r{round_}"
            good = make_run(base / "a")
            make_run(base / "b")
            bad = bad_rows(seed=1000 + round_, damaged_rows=40)
            counts["bad rows"] += len(bad)
            rng = random.Random(round_)
            mixed = [good[0], *bad, *good[1:]]
            rng.shuffle(mixed)
            (base / "a" / "results.jsonl").write_bytes(b"".join(mixed))
            for args in (
                ("scorecard", str(base / "a")),
                ("diff", str(base / "b"), str(base / "a")),
                ("merge", "--out", str(base / "m"), str(base / "a"), str(base / "b")),
            ):
                code, err = probe(*args)
                counts["probes"] += 1
                if code is None:
                    counts["tracebacks"] += 1
                    failures.append(f"{args[0]}: {err[-800:]}")
                elif code != 0 or f"skipped {len(bad)} bad row(s)" not in err:
                    counts["contract broken"] += 1
                    failures.append(f"{args[0]} exit {code}: {err[-400:]}")
            cells = json.loads((base / "a" / "scorecard.json").read_text())["cells"]
            merged = (base / "m" / "results.jsonl").read_text().splitlines()
            if cells[0]["counts"] != {"pass": 3} or len(merged) != 4:
                counts["rows lost or twice"] += 1
            for name in ("plan.json", "run.json", "coverage.json"):
                run_dir = base / f"f-{name}"
                make_run(run_dir)
                (run_dir / "coverage.json").write_text(
                    json.dumps({"covered": 1, "registered": 2, "uncovered": ["a"]})
                )
                pristine = (run_dir / name).read_bytes()
                for damaged in damaged_documents(pristine, random.Random(f"{name}:{round_}")):
                    (run_dir / name).write_bytes(damaged)
                    merge = ("merge", "--out", str(base / "fm"), str(run_dir), str(base / "b"))
                    diff = ("diff", str(base / "b"), str(run_dir))
                    for args in [("scorecard", str(run_dir)), merge, diff][: 3 if name == "plan.json" else 1]:
                        code, err = probe(*args)
                        counts["probes"] += 1
                        said = [ln for ln in err.splitlines() if ln.startswith("portability: ")]
                        errors = [ln for ln in said if not ln.startswith("portability: skipped ")]
                        if code is None:
                            counts["tracebacks"] += 1
                            failures.append(f"{args[0]} {name} {damaged[:60]!r}: {err[-800:]}")
                        elif code not in (0, 2) or (code == 2 and len(errors) != 1):
                            counts["contract broken"] += 1
                            failures.append(f"{args[0]} {name} {damaged[:60]!r}: exit {code}: {err[-400:]}")
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    for failure in failures[:10]:
        print("  " + failure)
    return 1 if failures or counts["rows lost or twice"] else 0


if __name__ == "__main__":
    sys.exit(run(int(sys.argv[1]) if len(sys.argv) > 1 else 50))
