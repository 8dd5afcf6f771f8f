#!/usr/bin/env bash
# The job this directory's results came from, on one fresh H100 box (wheels in .whl/, FlagGems' tuner
# choices of earlier sessions in .gpu/flaggems-cache.tgz), started and collected with tools/gpu-bg.sh:
#   tools/gpu-bg.sh start sweep bash docs/scorecards/h100-sweep-worksteal-2026-11-25/run.sh
#   tools/gpu-bg.sh wait sweep 560          (again, back to back, until it ends)
# 1. cold: the flaggems cell of the whole catalog at three dtypes, 12 workers, xdist `worksteal`
#    (vLLM's gate job of ../h100-serving-vllm-gate-top20-2026-11-25 runs beside it on the same GPU);
# 2. warm: the same cell in a new process and run directory on that cache, with a 120 s case limit,
#    alone on the GPU (it waits up to +20 min for the gate to end): the timed sweep of issue #3.
set -u
export PORTABILITY_CACHE=/tmp/pcache
step() {  # step NAME COMMAND...: its files under $JOB_OUT/NAME, wall time in steps.txt
  local name=$1 t0; shift; t0=$(date +%s); mkdir -p "$JOB_OUT/$name"
  echo "== $name start $(date -u +%T)"
  OUT=$JOB_OUT/$name "$@"
  echo "$name rc=$? wall=$(( $(date +%s) - t0 ))s" | tee -a "$JOB_OUT/steps.txt"
}
sweep=(--backends flaggems --devices cuda --dtypes fp16,bf16,fp32 --no-serving --workers 12)
step cold env RUN_TIMEOUT=1500 bash tools/gpu-run.sh /tmp/sweep-cold "${sweep[@]}"
while [ -e /tmp/jobs/vllm/pid ] && [ ! -e /tmp/jobs/vllm/out/gate.done ] && [ $SECONDS -lt 1200 ]; do sleep 5; done
# what else holds the GPU when the timed sweep starts (nothing, unless the gate outlived the wait)
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv | tee "$JOB_OUT/gpu-apps-at-warm.txt"
step warm env RUN_TIMEOUT=900 bash tools/gpu-run.sh /tmp/sweep-warm "${sweep[@]}" --case-timeout 120
