#!/usr/bin/env bash
# The job this directory's results came from, on the box of ../h100-sweep-worksteal-2026-11-25 (attempt 1)
# and of ../h100-sweep-dealt-2026-11-25 (attempt 2) (started
# after that sweep's cold run had begun), with vLLM 0.20.2's offline bundle unpacked into /tmp/vsite (parts
# carried one per call, then `cat /tmp/parts/bundle.part.* | xz -d | tar -x -C /tmp/vsite`) and .whl2/
# (OpenAI-server needs) + .whl3/ (vllm-plugin-FL and its needs) installed there with --no-deps:
#   tools/gpu-bg.sh start vllm bash docs/scorecards/h100-serving-vllm-gate-top20-2026-11-25/run.sh
#   tools/gpu-bg.sh wait vllm 560          (again, back to back, until it ends)
# 1. vLLM's gate for flaggems@cuda with the top-20 default (beside the cold operator sweep: its tok/s are
#    indicative only); 2. once the sweep job has ended (its warm run is timed alone), the vllm-fl engine,
#    torch and flaggems, with their gates.
set -u
export PYTHONPATH=/tmp/vsite PORTABILITY_CACHE=/tmp/pcache
here=docs/scorecards/h100-serving-vllm-gate-top20-2026-11-25
step() {  # step NAME COMMAND...: its files under $JOB_OUT/NAME, wall time in steps.txt
  local name=$1 t0; shift; t0=$(date +%s); mkdir -p "$JOB_OUT/$name"
  echo "== $name start $(date -u +%T)"
  OUT=$JOB_OUT/$name "$@"
  echo "$name rc=$? wall=$(( $(date +%s) - t0 ))s" | tee -a "$JOB_OUT/steps.txt"
}
step gate env RUN_TIMEOUT=1500 bash tools/gpu-run.sh /tmp/vllm-gate-top20 --matrix $here/gate-flaggems.yaml \
    --serving-only --cuda-graphs off --engines vllm
touch "$JOB_OUT/gate.done"
[ -n "${GATE_ONLY:-}" ] && exit 0  # attempt 2: the vllm-fl step ran in attempt 1
while [ -e /tmp/jobs/sweep/pid ] && [ ! -e /tmp/jobs/sweep/rc ]; do sleep 5; done
step vllm-fl env RUN_TIMEOUT=1500 bash tools/gpu-run.sh /tmp/vllm-fl --matrix $here/vllm-fl.yaml \
    --serving-only --cuda-graphs off --engines vllm-fl
