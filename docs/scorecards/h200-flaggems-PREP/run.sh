#!/usr/bin/env bash
# PREPARED, NOT RUN: on 2026-12-06 no GPU machine could be started in 8 tries (00:00-01:05 UTC). The job
# for one fresh GPU box (the device tool's nvidia-h200 kind;
# the reply names the card); rename the directory to h200-flaggems-5.3.4-<date>/ with its results. Issue #22: FlagGems 5.3.4 (../shared/wheels) against 5.0.2 (PyPI) on
# flaggems@cuda at bf16 over the whole catalog, a torch@cuda control, each version's coverage from its
# live registry on the GPU, and the diff comment a FlagGems maintainer would have seen on the 5.3.4
# release pull request. Issue #21 (first part): device_ms against triton.testing.do_bench for the
# Qwen3-path operators (tools/timing_agreement.py) on torch and FlagGems 5.3.4.
#   carry: .whl (common wheels at the top; flag-gems 5.0.2 in .whl/fg502/, 5.3.4 in .whl/fg534/)
#   tools/gpu-bg.sh start job bash docs/scorecards/h200-flaggems-PREP/run.sh
#   tools/gpu-bg.sh wait job 560 /tmp/run-534 /tmp/run-502 /tmp/run-torch   (back to back until it ends)
# Each FlagGems version is installed into its own folder, first on PYTHONPATH for its steps only. Each
# sweep is bounded (RUN_TIMEOUT): cases a sweep did not reach are *not run* in its scorecard.
set -u
export PORTABILITY_CACHE=/tmp/pcache PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/site .whl/*.whl
for v in 502 534; do
  [ -d /tmp/fg$v ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/fg$v .whl/fg$v/*.whl
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$JOB_OUT/gpu.txt"
step() {  # step NAME COMMAND...: its files under $JOB_OUT/NAME, wall time in steps.txt
  local name=$1 t0; shift; t0=$(date +%s); mkdir -p "$JOB_OUT/$name"
  echo "== $name start $(date -u +%T)"
  OUT=$JOB_OUT/$name "$@"
  echo "$name rc=$? wall=$(( $(date +%s) - t0 ))s" | tee -a "$JOB_OUT/steps.txt"
}
cache=(FLAGGEMS_CACHE_DIR=/tmp/cache/flaggems TRITON_CACHE_DIR=/tmp/cache/triton TRITON_CACHE_AUTOTUNING=1)
step agreement env PYTHONPATH=/tmp/fg534:/tmp/site:$PWD "${cache[@]}" timeout -k 10 "${TAGREE:-240}" \
  python3 tools/timing_agreement.py --device cuda --backends torch,flaggems --dtype bf16 --cache cold \
  --out "$JOB_OUT/agreement"
sweep=(--devices cuda --dtypes bf16 --no-serving --workers 12 --case-timeout 90)
step fg534 env PYTHONPATH=/tmp/fg534 RUN_TIMEOUT=${T534:-360} bash tools/gpu-run.sh /tmp/run-534 --backends flaggems "${sweep[@]}"
step fg502 env PYTHONPATH=/tmp/fg502 RUN_TIMEOUT=${T502:-300} bash tools/gpu-run.sh /tmp/run-502 --backends flaggems "${sweep[@]}"
step torch env RUN_TIMEOUT=${TTORCH:-100} bash tools/gpu-run.sh /tmp/run-torch --backends torch "${sweep[@]}"
for v in 502 534; do
  PYTHONPATH=/tmp/fg$v:/tmp/site:$PWD timeout 300 python3 -m portability coverage --backend flaggems > "$JOB_OUT/coverage-$v.txt" 2>&1
done
# The release pull request's comment: 5.0.2 is the base branch's scorecard, 5.3.4 the head's.
PYTHONPATH=/tmp/site:$PWD python3 -m portability diff /tmp/run-502 /tmp/run-534 --out "$JOB_OUT/diff-comment.md" > /dev/null 2> "$JOB_OUT/diff.stderr"
echo "diff rc=$?" | tee -a "$JOB_OUT/steps.txt"
