#!/usr/bin/env bash
# The job this directory's results came from, on one fresh H100 box, seeded with the tuner choices of
# ../h100-sweep-worksteal-2026-11-25 (.gpu/flaggems-cache.tgz, .gpu/triton-autotune.tgz), started and
# collected with tools/gpu-bg.sh:
#   tools/gpu-bg.sh start sweep bash docs/scorecards/h100-sweep-dealt-2026-11-25/run.sh
#   tools/gpu-bg.sh wait sweep 560          (again, back to back, until it ends)
# Cases now reach the workers heaviest first, dealt round-robin (portability/schedule.py).
# 1. cold (Triton compiles every kernel; the tuner choices are seeded), 200 s case limit, beside vLLM's
#    gate job of ../h100-serving-vllm-gate-top20-2026-11-25 on the same GPU;
# 2. warm: the same cell in a new process and run directory on that cache, 120 s case limit, timed
#    alone on the GPU unless the gate outlives cold by more than 240 s (gpu-apps-at-warm.txt says).
set -u
export PORTABILITY_CACHE=/tmp/pcache
step() {  # step NAME COMMAND...: its files under $JOB_OUT/NAME, wall time in steps.txt
  local name=$1 t0; shift; t0=$(date +%s); mkdir -p "$JOB_OUT/$name"
  echo "== $name start $(date -u +%T)"
  OUT=$JOB_OUT/$name "$@"
  echo "$name rc=$? wall=$(( $(date +%s) - t0 ))s" | tee -a "$JOB_OUT/steps.txt"
}
sweep=(--backends flaggems --devices cuda --dtypes fp16,bf16,fp32 --no-serving --workers 12)
step cold env RUN_TIMEOUT=1500 bash tools/gpu-run.sh /tmp/sweep-cold "${sweep[@]}" --case-timeout 200
cold_end=$SECONDS
while [ -e /tmp/jobs/vllm/pid ] && [ ! -e /tmp/jobs/vllm/out/gate.done ] && [ $((SECONDS - cold_end)) -lt 240 ]; do
  sleep 5
done
nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv | tee "$JOB_OUT/gpu-apps-at-warm.txt"
step warm env RUN_TIMEOUT=900 bash tools/gpu-run.sh /tmp/sweep-warm "${sweep[@]}" --case-timeout 120
