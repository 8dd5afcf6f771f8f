#!/usr/bin/env bash
# The job this directory's results came from: one H200 (or H100) box, FlagGems 5.3.4 (../shared/wheels)
# against 5.0.2 (PyPI) on flaggems@cuda at bf16 over the whole catalog, a torch@cuda control, each
# version's coverage from its live registry on the GPU, and the diff comment a FlagGems maintainer would
# have seen on the 5.3.4 release pull request. Started and collected with tools/gpu-bg.sh:
#   carry: .whl (common wheels at the top; flag-gems 5.0.2 in .whl/fg502/, 5.3.4 in .whl/fg534/)
#   tools/gpu-bg.sh start fg bash docs/scorecards/h200-flaggems-5.3.4-2026-12-05/run.sh
#   tools/gpu-bg.sh wait fg 560 /tmp/run-534 /tmp/run-502 /tmp/run-torch   (back to back until it ends)
# Each FlagGems version is installed into its own folder and put first on PYTHONPATH for its steps only.
set -u
export PORTABILITY_CACHE=/tmp/pcache
for v in 502 534; do
  [ -d /tmp/fg$v ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/fg$v .whl/fg$v/*.whl
done
step() {  # step NAME COMMAND...: its files under $JOB_OUT/NAME, wall time in steps.txt
  local name=$1 t0; shift; t0=$(date +%s); mkdir -p "$JOB_OUT/$name"
  echo "== $name start $(date -u +%T)"
  OUT=$JOB_OUT/$name "$@"
  echo "$name rc=$? wall=$(( $(date +%s) - t0 ))s" | tee -a "$JOB_OUT/steps.txt"
}
sweep=(--devices cuda --dtypes bf16 --no-serving --workers 12 --case-timeout 90)
step fg534 env PYTHONPATH=/tmp/fg534 RUN_TIMEOUT=${T534:-480} bash tools/gpu-run.sh /tmp/run-534 --backends flaggems "${sweep[@]}"
step fg502 env PYTHONPATH=/tmp/fg502 RUN_TIMEOUT=${T502:-360} bash tools/gpu-run.sh /tmp/run-502 --backends flaggems "${sweep[@]}"
step torch env RUN_TIMEOUT=${TTORCH:-150} bash tools/gpu-run.sh /tmp/run-torch --backends torch "${sweep[@]}"
export PYTHONPATH=/tmp/site:$PWD
for v in 502 534; do
  PYTHONPATH=/tmp/fg$v:$PYTHONPATH python3 -m portability coverage --backend flaggems > "$JOB_OUT/coverage-$v.txt" 2>&1
done
# The release pull request's comment: 5.0.2 is the base branch's scorecard, 5.3.4 the head's.
python3 -m portability diff /tmp/run-502 /tmp/run-534 --out "$JOB_OUT/diff-comment.md" > /dev/null 2> "$JOB_OUT/diff.stderr"
echo "diff rc=$?" | tee -a "$JOB_OUT/steps.txt"
