#!/usr/bin/env bash
# The device call this directory's results came from (one fresh GPU box, wheels in .whl/: flag-gems
# 5.0.2 --no-deps, sqlalchemy, greenlet, pytest-timeout):
#   bash docs/scorecards/h200-serving-hf-2026-12-01/run.sh
set -uo pipefail
export PORTABILITY_CACHE=/tmp/pcache
here=docs/scorecards/h200-serving-hf-2026-12-01
t0=$(date +%s)
RUN_TIMEOUT=${RUN_TIMEOUT:-550} bash tools/gpu-run.sh /tmp/hf-serve --matrix $here/matrix.yaml --serving-only \
  2>&1 | tee "${OUT:-/tmp}/console.log"
echo "rc=$? wall=$(( $(date +%s) - t0 ))s"
