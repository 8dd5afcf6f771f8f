#!/usr/bin/env bash
# The pull-request flow of .github/workflows/portability-matrix.yml on one CPU host, with the commands its
# jobs run: a "base" and a "head" run of the same cells, one shard per cell (as the workflow's cell jobs,
# whose nox session `matrix-<backend>-<device>` runs `portability run --backends B --devices D` plus the
# selection), each side merged with the expected cells, then the diff that becomes the sticky comment.
# Base: flag-gems 5.0.2 (PyPI); head: flag-gems 5.3.4 (../shared/wheels). The head's inductor shard is
# stopped by `timeout`, as the workflow's time limit stops a cell job, to show what a cut-short shard does.
# Run from the repository root: docs/examples/pr-comment/run.sh
set -euo pipefail
OUT=${OUT:-out/pr-comment}
BASE_PY=${BASE_PY:-/work/venv/bin/python}          # torch 2.13.0+cpu, flag-gems 5.0.2
HEAD_PY=${HEAD_PY:-/work/venv-ci-flow/bin/python}  # torch 2.13.0+cpu, flag-gems 5.3.4
HEAD_INDUCTOR_LIMIT=${HEAD_INDUCTOR_LIMIT:-120s}
CELLS=torch@cpu,inductor@cpu,flaggems@cpu
SELECT=(--ops softmax,add,mm --dtypes fp32 --no-serving)
export PYTHONPATH=$PWD
rm -rf "$OUT"

run_side() {  # side python
  local side=$1 py=$2 shards=()
  for cell in ${CELLS//,/ }; do
    local backend=${cell%@*} device=${cell#*@}
    local shard="$OUT/$side/shards/matrix-$backend-${device//:/_}"
    local limit=()
    [ "$side/$backend" = head/inductor ] && limit=(timeout --kill-after=10 "$HEAD_INDUCTOR_LIMIT")
    "${limit[@]}" "$py" -m portability run --backends "$backend" --devices "$device" "${SELECT[@]}" \
      --out "$shard" --trend "$OUT/$side/trend.jsonl" || echo "$side $cell: exit code $? (uploaded as it is)"
    shards+=("$shard")
  done
  "$py" -m portability merge "${shards[@]}" --expected-cells "$CELLS" --out "$OUT/$side/merged"
}

run_side base "$BASE_PY"
run_side head "$HEAD_PY"
# the merge job: the diff against the base branch's scorecard is the comment and the job summary
"$HEAD_PY" -m portability diff "$OUT/base/merged" "$OUT/head/merged" --out "$OUT/comment.md" > /dev/null
wc -c "$OUT/comment.md"
