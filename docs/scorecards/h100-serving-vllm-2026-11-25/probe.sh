#!/usr/bin/env bash
# probe_gate_ops.py, one process per probe, each under its own time limit (a probe that hangs says so).
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 TRITON_CACHE_DIR=/tmp/cache/probe-triton FLAGGEMS_CACHE_DIR=/tmp/cache/probe-flaggems
cd "$(dirname "$0")"
for p in log_softmax:120 gather:90 topk20:150 topk256:240 count_ge:150 sdpa_fp32:150; do
  t0=$(date +%s)
  timeout -k 5 "${p#*:}" python3 probe_gate_ops.py "${p%%:*}" 2>&1 | grep -v Warning | tail -n 5
  echo "probe ${p%%:*}: rc=${PIPESTATUS[0]} wall=$(( $(date +%s) - t0 ))s (limit ${p#*:}s)"
done
