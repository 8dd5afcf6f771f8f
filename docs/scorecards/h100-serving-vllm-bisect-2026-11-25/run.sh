#!/usr/bin/env bash
# The job this directory's results came from, on one fresh H100 box with vLLM 0.20.2's offline bundle
# unpacked into /tmp/vsite (parts carried one per call, then
# `cat /tmp/parts/bundle.part.* | xz -d -T0 | tar -x -C /tmp/vsite`) and .whl2/ + .whl3/ installed there
# with --no-deps; FlagGems' and Triton's tuner choices seeded from .gpu/:
#   tools/gpu-bg.sh start bisect bash docs/scorecards/h100-serving-vllm-bisect-2026-11-25/run.sh
#   tools/gpu-bg.sh wait bisect 560 /tmp/vllm-bisect     (again, back to back, until it ends)
set -u
export PYTHONPATH=/tmp/vsite PORTABILITY_CACHE=/tmp/pcache
here=docs/scorecards/h100-serving-vllm-bisect-2026-11-25
t0=$(date +%s)
OUT=$JOB_OUT RUN_TIMEOUT=1560 bash tools/gpu-run.sh /tmp/vllm-bisect --matrix $here/bisect.yaml \
    --serving-only --cuda-graphs off --engines vllm
echo "rc=$? wall=$(( $(date +%s) - t0 ))s" | tee "$JOB_OUT/steps.txt"
