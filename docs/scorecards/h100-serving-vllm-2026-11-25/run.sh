#!/usr/bin/env bash
# The job this directory's results came from, on one H100 box with vLLM 0.20.2's offline bundle unpacked
# into /tmp/site (parts carried one per call, then `cat /tmp/parts/bundle.part.* | xz -d | tar -x -C /tmp/site`)
# and .whl2/ (OpenAI-server needs) + .whl3/ (vllm-plugin-FL and its needs) installed there with --no-deps:
#   tools/gpu-bg.sh start vllm bash docs/scorecards/h100-serving-vllm-2026-11-25/run.sh
#   tools/gpu-bg.sh wait vllm 560          (again, back to back, until it ends)
# 1. vLLM's gate for flaggems@cuda alone, with time to finish; 2. the vllm-fl engine, torch and flaggems.
# Beside it, probe_gate_ops.py times the operators of vLLM's prompt-logprobs path with FlagGems on.
set -u
export PYTHONPATH=/tmp/site PORTABILITY_CACHE=/tmp/pcache
here=docs/scorecards/h100-serving-vllm-2026-11-25
step() {  # step NAME COMMAND...: its files under $JOB_OUT/NAME, wall time in steps.txt
  local name=$1 t0; shift; t0=$(date +%s); mkdir -p "$JOB_OUT/$name"
  echo "== $name start $(date -u +%T)"
  OUT=$JOB_OUT/$name "$@"
  echo "$name rc=$? wall=$(( $(date +%s) - t0 ))s" | tee -a "$JOB_OUT/steps.txt"
}
# The gate runs first; vllm-fl starts once the gate's bf16 throughput run is over (its own tok/s are then
# measured beside the gate's float32 logprobs run: indicative only).
step gate env RUN_TIMEOUT=1700 bash tools/gpu-run.sh /tmp/vllm-gate-fg --matrix $here/gate-flaggems.yaml \
    --serving-only --cuda-graphs off --engines vllm &
sleep 330
step vllm-fl env RUN_TIMEOUT=1500 bash tools/gpu-run.sh /tmp/vllm-fl --matrix $here/vllm-fl.yaml \
    --serving-only --cuda-graphs off --engines vllm-fl
wait
