#!/usr/bin/env bash
# The job this directory's results came from, on one fresh H100 box (wheels in .whl/, FlagGems' tuner
# choices of earlier sessions in .gpu/flaggems-cache.tgz), started and collected with tools/gpu-bg.sh:
#   tools/gpu-bg.sh start sweep bash docs/scorecards/h100-sweep-warm-2026-11-25/run.sh
#   tools/gpu-bg.sh wait sweep 560          (again, back to back, until it ends)
# 1. cold: the flaggems cell of the whole catalog at three dtypes, 12 workers (Triton compiles, and with
#    TRITON_CACHE_AUTOTUNING=1 keeps the autotuner's choices, under /tmp/cache);
# 2. warm: the same cell again in a new process and run directory on that cache: the timed sweep;
# 3. the torch@cuda control (spec fixes since 2026-11-24) beside the hf bisection of the crash that
#    ../h100-serving-hf-2026-11-24/ left at two suspects (neither is timed against the other).
set -u
export PORTABILITY_CACHE=/tmp/pcache
step() {  # step NAME COMMAND...: its files under $JOB_OUT/NAME, wall time in steps.txt
  local name=$1 t0; shift; t0=$(date +%s); mkdir -p "$JOB_OUT/$name"
  echo "== $name start $(date -u +%T)"
  OUT=$JOB_OUT/$name "$@"
  echo "$name rc=$? wall=$(( $(date +%s) - t0 ))s" | tee -a "$JOB_OUT/steps.txt"
}
sweep=(--devices cuda --dtypes fp16,bf16,fp32 --no-serving --workers 12)
step cold env RUN_TIMEOUT=1500 bash tools/gpu-run.sh /tmp/sweep-cold --backends flaggems "${sweep[@]}"
step warm env RUN_TIMEOUT=900 bash tools/gpu-run.sh /tmp/sweep-warm --backends flaggems "${sweep[@]}"
step torch env RUN_TIMEOUT=900 bash tools/gpu-run.sh /tmp/sweep-torch --backends torch "${sweep[@]}" &
step hf-bisect env RUN_TIMEOUT=900 bash tools/gpu-run.sh /tmp/hf-bisect --serving-only \
    --matrix docs/scorecards/h100-serving-hf-2026-11-24/matrix-suspects.yaml &
wait
