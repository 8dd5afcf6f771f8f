#!/usr/bin/env bash
# FlagGems' own accuracy tests next to our sweep, for the same operators, on one GPU box, in one call.
#
#   (a) FlagGems v5.0.2's accuracy tests (tests/test_<op>.py, selected with their per-operator pytest
#       marks, run as FlagGems' tools/run_tests.py does: `pytest -m <op> --ref cpu`, plus `--quick` in the
#       default FG_MODE=quick), from .flaggems-tests/ (a git-ignored copy of the files they need);
#   (b) `portability run --backends flaggems --devices cuda --ops <the same ops> --dtypes fp16,bf16,fp32`;
#   then writes $OUT/side-by-side.md and .json: wall time, exit status and pass/fail counts of both, in
#   total and per operator.
#
# Box: python3 with torch (CUDA), triton, pytest, tabulate, PyYAML; wheels for what it lacks in .whl/
# (flag-gems 5.0.2 installed --no-deps, sqlalchemy, greenlet, pytest-timeout, as tools/gpu-run.sh; numpy
# for FlagGems' tests). A missing test dependency skips phase (a) with the reason; (b) still runs.
# Both phases start from the same FlagGems autotune cache (.gpu/flaggems-cache.tgz when carried) and
# each from an empty Triton cache, so neither inherits the other's compiled kernels.
#
# FlagGems' tests run in one pytest process: their conftest does not survive pytest-xdist (its
# pytest_runtest_logreport hook raises KeyError on the controller), and our sweep uses one worker per GPU.
#
# Time: BUDGET (default 570 s, for a 600 s call) bounds the whole script; FlagGems' tests get FG_TIMEOUT
# (default 200 s), our sweep what is left (OURS_TIMEOUT overrides), each cut with `timeout`: a cut phase
# is reported as cut, with the counts of what finished.
#
# usage: [FG_MODE=quick|full] [FG_TIMEOUT=200] [BUDGET=570] [OURS_TIMEOUT=...] [OPS="add mul ..."] \
#        tools/flaggems-side-by-side.sh            (results go to $OUT, default out/side-by-side)
set -uo pipefail
script_t0=$(date +%s)
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/out/side-by-side}
WORK=${WORK:-/tmp/flaggems-side-by-side}
FG_MODE=${FG_MODE:-quick}
FG_TIMEOUT=${FG_TIMEOUT:-200}
BUDGET=${BUDGET:-570}
mkdir -p "$OUT" "$WORK"
rm -rf "${WORK:?}"/*

# FlagGems test file : pytest mark(s) : our operator. The marks pick exactly the tests of that operator
# (test_add.py also holds add_ tests, test_sum.py sum and sum_dim_out, test_silu.py silu_ and backward...).
PAIRS=(
  "test_add:add:add"
  "test_mul:mul:mul"
  "test_softmax:softmax:softmax"
  "test_mm:mm:mm"
  "test_rms_norm:rms_norm:rms_norm"
  "test_sum:sum_dim:sum_dim"
  "test_argmax:argmax:argmax"
  "test_exp:exp:exp"
  "test_layer_norm:layer_norm:layer_norm"
  "test_cumsum:cumsum:cumsum"
  "test_topk:topk:topk"
  "test_silu:silu:silu"
  "test_gelu_and_mul:gelu_and_mul:gelu_and_mul"
  "test_fused_add_rms_norm:fused_add_rms_norm:fused_add_rms_norm"
  "test_moe_sum:moe_sum:moe_sum"
  "test_reshape_and_cache_flash:reshape_and_cache_flash:reshape_and_cache_flash"
)
if [ -n "${OPS:-}" ]; then  # keep only the pairs whose operator is listed
  keep=()
  for p in "${PAIRS[@]}"; do
    for o in $OPS; do [ "${p##*:}" = "$o" ] && keep+=("$p"); done
  done
  PAIRS=("${keep[@]}")
fi
files=() marks=() ours=()
for p in "${PAIRS[@]}"; do
  IFS=: read -r f m o <<<"$p"
  files+=("tests/$f.py"); marks+=("$m"); ours+=("$o")
done
mark_expr=$(printf ' or %s' "${marks[@]}"); mark_expr=${mark_expr# or }
our_ops=$(IFS=,; echo "${ours[*]}")
printf '%s\n' "${PAIRS[@]}" >"$WORK/pairs.txt"

now() { date +%s.%N; }
log() { echo "== $(date -u +%H:%M:%S) $*"; }

# ---------------------------------------------------------------- environment (as tools/gpu-run.sh)
SITE=${SITE:-/tmp/site}
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
    || log "pip install of .whl/ failed (continuing with what is importable)"
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$WORK/gpu.txt" 2>/dev/null || true
cache_seed=$WORK/cache-seed
mkdir -p "$cache_seed"
[ -f .gpu/flaggems-cache.tgz ] && tar xzf .gpu/flaggems-cache.tgz -C "$cache_seed"
mkdir -p "$cache_seed/flaggems"
fresh_caches() {  # $1: phase name -> exports FLAGGEMS_CACHE_DIR (a copy of the seed) and an empty TRITON_CACHE_DIR
  rm -rf "$WORK/cache-$1"; mkdir -p "$WORK/cache-$1"
  cp -a "$cache_seed/flaggems" "$WORK/cache-$1/flaggems"
  export FLAGGEMS_CACHE_DIR=$WORK/cache-$1/flaggems TRITON_CACHE_DIR=$WORK/cache-$1/triton
}

PYTHONPATH=$SITE python3 - >"$WORK/versions.json" 2>"$WORK/versions.err" <<'EOF'
import importlib, json, sys
found = {"python": sys.version.split()[0]}
for mod in ("torch", "triton", "pytest", "xdist", "numpy", "yaml", "sqlalchemy", "packaging", "flag_gems"):
    try:
        m = importlib.import_module(mod)
        found[mod] = str(getattr(m, "__version__", "present"))
    except Exception as exc:  # flag_gems raises RuntimeError when it finds no device
        found[mod] = f"MISSING: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
print(json.dumps(found))
EOF
cat "$WORK/versions.json"

# ---------------------------------------------------------------- (a) FlagGems' own accuracy tests
fg_skip=""
[ -d .flaggems-tests/tests ] || fg_skip="no .flaggems-tests/ in the checkout (carry it: it is git-ignored)"
for need in pytest numpy yaml flag_gems; do
  if [ -z "$fg_skip" ] && grep -q "\"$need\": \"MISSING" "$WORK/versions.json"; then
    fg_skip="FlagGems' tests need '$need': $(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$WORK/versions.json" "$need")"
  fi
done
fg_args=(--ref cpu)
[ "$FG_MODE" = quick ] && fg_args+=(--quick)
fg_rc=""; fg_wall=""
if [ -z "$fg_skip" ]; then
  cp -a .flaggems-tests "$WORK/flaggems-tests"
  fresh_caches flaggems
  log "(a) FlagGems tests: pytest -m \"$mark_expr\" ${files[*]} ${fg_args[*]}"
  t0=$(now)
  (cd "$WORK/flaggems-tests" && PYTHONPATH=$SITE timeout -k 10 "$FG_TIMEOUT" python3 -m pytest -p no:cacheprovider \
    -o console_output_style=classic -v -rfE --junitxml="$WORK/flaggems-junit.xml" \
    -m "$mark_expr" "${files[@]}" "${fg_args[@]}" >"$WORK/flaggems-pytest.log" 2>&1)
  fg_rc=$?
  fg_wall=$(python3 -c "print(round($(now) - $t0, 2))")
  cp "$WORK"/flaggems-tests/result_*.json "$WORK/flaggems-results.json" 2>/dev/null
  log "(a) exit $fg_rc after ${fg_wall}s"; tail -5 "$WORK/flaggems-pytest.log"
else
  log "(a) skipped: $fg_skip"
fi

# ---------------------------------------------------------------- (b) our sweep, same operators
OURS_TIMEOUT=${OURS_TIMEOUT:-$((BUDGET - ($(date +%s) - script_t0) - 20))}
[ "$OURS_TIMEOUT" -lt 30 ] && OURS_TIMEOUT=30
fresh_caches ours
log "(b) portability run --backends flaggems --devices cuda --ops $our_ops --dtypes fp16,bf16,fp32"
t0=$(now)
PYTHONPATH=$SITE:$ROOT timeout -k 10 "$OURS_TIMEOUT" python3 -m portability run --backends flaggems --devices cuda \
  --ops "$our_ops" --dtypes fp16,bf16,fp32 --no-serving --out "$WORK/ours" >"$WORK/ours.log" 2>&1
ours_rc=$?
ours_wall=$(python3 -c "print(round($(now) - $t0, 2))")
[ $ours_rc -ne 0 ] && PYTHONPATH=$SITE:$ROOT python3 -m portability scorecard "$WORK/ours" >/dev/null 2>&1
log "(b) exit $ours_rc after ${ours_wall}s"; tail -3 "$WORK/ours.log"

# ---------------------------------------------------------------- summary
FG_SKIP=$fg_skip FG_RC=$fg_rc FG_WALL=$fg_wall FG_TIMEOUT=$FG_TIMEOUT FG_MODE=$FG_MODE OURS_RC=$ours_rc \
OURS_WALL=$ours_wall OURS_TIMEOUT=$OURS_TIMEOUT MARK_EXPR=$mark_expr FG_ARGS="${fg_args[*]}" \
python3 - "$WORK" "$OUT" <<'EOF'
import collections, json, os, re, sys
import xml.etree.ElementTree as ET

work, out = sys.argv[1], sys.argv[2]
env = os.environ
pairs = [line.strip().split(":") for line in open(f"{work}/pairs.txt") if line.strip()]
op_of_file = {f: o for f, _, o in pairs}


def timed_out(rc, limit):
    return rc in ("124", "137") and f"cut by the {limit} s limit"


# (a) per test: status from the -v log (survives a kill), durations from junit when pytest finished
fg = {"mode": env["FG_MODE"], "args": env["FG_ARGS"], "marks": env["MARK_EXPR"]}
fg_ops = {o: collections.Counter() for _, _, o in pairs}
fg_time = collections.defaultdict(float)
if env["FG_SKIP"]:
    fg.update(status="skipped", reason=env["FG_SKIP"])
else:
    fg.update(exit=int(env["FG_RC"]), wall_s=float(env["FG_WALL"]), cut=timed_out(env["FG_RC"], env["FG_TIMEOUT"]))
    log = open(f"{work}/flaggems-pytest.log", errors="replace").read()
    states = "PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS"
    serial = re.findall(rf"^tests/(test_\w+)\.py::.*? ({states})\b", log, re.M)  # "nodeid STATUS"
    xdist = [(f, s) for s, f in re.findall(rf"^\[gw\d+\] (?:\[ *\d+%\] )?({states}) tests/(test_\w+)\.py::", log, re.M)]
    for f, status in serial + xdist:
        fg_ops.setdefault(op_of_file.get(f, f), collections.Counter())[status.lower()] += 1
    for f in re.findall(r"ERROR collecting tests/(test_\w+)\.py", log):
        fg_ops.setdefault(op_of_file.get(f, f), collections.Counter())["collection error"] += 1
    m = re.search(r"collected (\d+) items?(?: / (\d+) deselected)?(?: / (\d+) selected)?", log)
    if m:
        fg["selected"] = int(m.group(3) or int(m.group(1)) - int(m.group(2) or 0))
    if os.path.exists(f"{work}/flaggems-junit.xml"):
        for case in ET.parse(f"{work}/flaggems-junit.xml").iter("testcase"):
            f = case.get("classname", "").split(".")[-1]
            fg_time[op_of_file.get(f, f)] += float(case.get("time") or 0)
fg["totals"] = dict(sum(fg_ops.values(), collections.Counter()))

# (b) per case rows of results.jsonl
ours = {"exit": int(env["OURS_RC"]), "wall_s": float(env["OURS_WALL"]), "cut": timed_out(env["OURS_RC"], env["OURS_TIMEOUT"])}
our_ops = {o: collections.Counter() for _, _, o in pairs}
our_time, our_compile = collections.defaultdict(float), collections.defaultdict(float)
planned = 0
try:
    plan = json.load(open(f"{work}/ours/plan.json"))
    cases = plan.get("cases", plan) if isinstance(plan, dict) else plan
    planned = sum(1 for c in cases if isinstance(c, dict) and c.get("backend", "flaggems") == "flaggems")
    ours["cells"] = {
        f"{c['backend']}@{c['device']}": c["status"] + (f": {c['reason']}" if c.get("reason") else "")
        for c in plan.get("cells", [])
    }
except Exception:
    pass
if os.path.exists(f"{work}/ours/results.jsonl"):
    for raw in open(f"{work}/ours/results.jsonl"):
        r = json.loads(raw)
        if r.get("kind") != "op":
            continue
        our_ops.setdefault(r["op"], collections.Counter())[r["status"]] += 1
        our_time[r["op"]] += r.get("duration_s") or 0
        our_compile[r["op"]] += r.get("compile_s") or 0
ours["planned_cases"] = planned
if os.path.exists(f"{work}/ours.log"):
    ours["log_tail"] = open(f"{work}/ours.log", errors="replace").read().strip().splitlines()[-3:]
ours["totals"] = dict(sum(our_ops.values(), collections.Counter()))

gpu = open(f"{work}/gpu.txt").read().strip() if os.path.exists(f"{work}/gpu.txt") else ""
try:
    versions = json.load(open(f"{work}/versions.json"))
except Exception:
    versions = {}
per_op = {
    o: {
        "flaggems_tests": dict(fg_ops.get(o, {})),
        "flaggems_tests_s": round(fg_time.get(o, 0.0), 2),
        "ours": dict(our_ops.get(o, {})),
        "ours_s": round(our_time.get(o, 0.0), 2),
        "ours_compile_s": round(our_compile.get(o, 0.0), 2),
        "flaggems_test_file": f"tests/{f}.py",
        "mark": m,
    }
    for f, m, o in pairs
}
summary = {"gpu": gpu, "versions": versions, "flaggems_tests": fg, "ours": ours, "per_op": per_op}
json.dump(summary, open(f"{out}/side-by-side.json", "w"), indent=2)


def counts(c):
    c = dict(c)
    return ", ".join(f"{v} {k}" for k, v in sorted(c.items(), key=lambda kv: -kv[1])) or "–"


md = ["# FlagGems' accuracy tests vs our sweep, same operators", ""]
md += [f"GPU: {gpu or 'unknown'} · " + " · ".join(f"{k} {v}" for k, v in versions.items()), ""]
md += ["| | wall time | exit | result |", "|---|---|---|---|"]
if env["FG_SKIP"]:
    md.append(f"| FlagGems tests | – | – | skipped: {env['FG_SKIP']} |")
else:
    cut = f" ({fg['cut']})" if fg["cut"] else ""
    done = f" ({sum(fg['totals'].values())}/{fg.get('selected', '?')} tests run)"
    md.append(
        f"| FlagGems tests (`{fg['args']}`) | {fg['wall_s']:.1f} s{cut} | {fg['exit']} | {counts(fg['totals'])}{done} |"
    )
cut = f" ({ours['cut']})" if ours["cut"] else ""
ran = sum(ours["totals"].values())
md.append(
    f"| our sweep (flaggems@cuda, fp16/bf16/fp32) | {ours['wall_s']:.1f} s{cut} | {ours['exit']} | "
    f"{counts(ours['totals'])} ({ran}/{planned or '?'} cases run) |"
)
if ours["exit"] not in (0, 1) or not ran:  # 1: some case did not pass; anything else: say why
    md.append(f"| ↳ last words | | | `{' / '.join(ours.get('log_tail', []))[-300:]}` |")
for cell, state in ours.get("cells", {}).items():
    if not state.startswith("available"):
        md.append(f"| ↳ {cell} | | | {state} |")
md += ["", "| operator | FlagGems tests | their test time | our cases | our case time (compile) |", "|---|---|---|---|---|"]
for o, d in per_op.items():
    md.append(
        f"| {o} (`-m {d['mark']}`) | {counts(d['flaggems_tests'])} | {d['flaggems_tests_s']:.1f} s | "
        f"{counts(d['ours'])} | {d['ours_s']:.1f} s ({d['ours_compile_s']:.1f} s) |"
    )
md += [
    "",
    "Wall times include process start-up, imports and every Triton compile/autotune (both phases start",
    "from the same FlagGems cache and an empty Triton cache). FlagGems' per-operator time is the sum of",
    "its junit test times (absent when pytest was cut); ours is the sum of `duration_s` per case.",
]
open(f"{out}/side-by-side.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
EOF

for f in flaggems-pytest.log flaggems-junit.xml flaggems-results.json versions.json ours.log; do
  [ -f "$WORK/$f" ] && cp "$WORK/$f" "$OUT/"
done
for f in results.jsonl scorecard.md scorecard.json plan.json; do
  [ -f "$WORK/ours/$f" ] && cp "$WORK/ours/$f" "$OUT/ours-$f"
done
tar czf "$OUT/flaggems-cache.tgz" -C "$WORK/cache-ours" flaggems 2>/dev/null  # carry back as .gpu/flaggems-cache.tgz
exit 0
