#!/usr/bin/env bash
# PREPARED, NOT RUN (no GPU where it was written): the H200 job of issue #21 — device_ms against
# triton.testing.do_bench, roofline on a real chip, both timing modes, noise. One fresh H200 box, wheels in
# .whl/ as for tools/gpu-run.sh (flag-gems 5.0.2 --no-deps, sqlalchemy, greenlet, pytest-timeout,
# expecttest); FlagGems' and Triton's tuner choices seeded from .gpu/. Longer than one device call, so:
#   tools/gpu-bg.sh start perf bash docs/scorecards/h200-perf-PREP/run.sh
#   tools/gpu-bg.sh wait perf 560 /tmp/h200-perf      (again, back to back, until it ends)
# STAGES (default all, in this order) picks a subset, e.g. STAGES="agreement qwen3" for a first call.
#   agreement  tools/timing_agreement.py: 10 Qwen3-path operators x their cases, torch and flaggems, bf16,
#              cold cache (as do_bench): device_ms / graph_ms / latency_ms beside do_bench's median
#   qwen3      the Qwen3 path, both cells, three dtypes, one worker per GPU (timings do not share the
#              device), --repeat 3: CV per case, both modes, roofline against the measured peaks
#   catalog    the whole catalog, both cells, three dtypes, one worker: the two headlines side by side
# Then rename the directory to h200-perf-<date>/ with the results and a README (agreement table, the two
# headlines from scorecard.md's performance section, the noise figures from scorecard.json cells[].perf).
set -u
OUT=${JOB_OUT:-${OUT:-/tmp/h200-perf-out}}
root=/tmp/h200-perf
mkdir -p "$OUT" "$root"
t0=$(date +%s)
stages=${STAGES:-agreement qwen3 catalog}
step() { echo "== $1 rc=$2 at $(( $(date +%s) - t0 ))s" | tee -a "$OUT/steps.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv | tee "$OUT/gpu.txt"

for stage in $stages; do
  case $stage in
    agreement)
      # gpu-run.sh installs the wheels into /tmp/site on its first call: a tiny run does that (and
      # measures the peaks once, cached in ~/.cache/flagos-portability/ for the stages after it)
      RUN_TIMEOUT=300 OUT= bash tools/gpu-run.sh "$root/warm" --backends torch,flaggems --devices cuda \
        --ops add --dtypes bf16 --no-serving > "$OUT/warm.log" 2>&1
      PYTHONPATH=/tmp/site:$PWD FLAGGEMS_CACHE_DIR=/tmp/cache/flaggems TRITON_CACHE_DIR=/tmp/cache/triton \
        TRITON_CACHE_AUTOTUNING=1 timeout -k 10 1200 python3 tools/timing_agreement.py --device cuda \
        --backends torch,flaggems --dtype bf16 --cache cold --out "$OUT/agreement" 2> "$OUT/agreement.log"
      step agreement $?
      ;;
    qwen3)
      RUN_TIMEOUT=3000 OUT= bash tools/gpu-run.sh "$root/qwen3" --backends torch,flaggems --devices cuda \
        --tags qwen3 --no-serving --workers 1 --repeat 3 > "$OUT/qwen3.log" 2>&1
      step qwen3 $?
      ;;
    catalog)
      RUN_TIMEOUT=5400 OUT= bash tools/gpu-run.sh "$root/catalog" --backends torch,flaggems --devices cuda \
        --no-serving --workers 1 > "$OUT/catalog.log" 2>&1
      step catalog $?
      ;;
    *) echo "unknown stage $stage (expected agreement, qwen3, catalog)" >&2; exit 2 ;;
  esac
done
# What comes back: the tables and scorecards, run.json (peaks, wall time, timing share), results.
for run in qwen3 catalog; do
  d=$root/$run
  [ -d "$d" ] || continue
  mkdir -p "$OUT/$run"
  cp "$d"/scorecard.md "$d"/scorecard.json "$d"/run.json "$d"/peaks.json "$OUT/$run/" 2>/dev/null
  gzip -c "$d/results.jsonl" > "$OUT/$run/results.jsonl.gz" 2>/dev/null
done
echo "wall=$(( $(date +%s) - t0 ))s" | tee -a "$OUT/steps.txt"
