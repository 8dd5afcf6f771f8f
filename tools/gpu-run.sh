#!/usr/bin/env bash
# Run `portability run` on an air-gapped GPU box that has torch/triton/pytest/xdist/tabulate but no
# package registry (the lab box we record scorecards on). Wheels for what it lacks travel in .whl/
# (flag-gems 5.0.2 installed --no-deps, sqlalchemy, greenlet, pytest-timeout, expecttest: the OpInfo specs
# import it through torch.testing, and without it 335 specs cannot load); the FlagGems autotune
# cache travels in .gpu/flaggems-cache.tgz between runs so later runs start warm.
#
# usage: [RUN_TIMEOUT=540] tools/gpu-run.sh RUN_DIR [portability run args...]   (OUT: where results go back)
set -uo pipefail
run_dir=${1:?usage: tools/gpu-run.sh RUN_DIR [args...]}; shift
if ls .whl/*.whl >/dev/null 2>&1; then
  # Installed once per set of wheels: a second run started beside the first must not rewrite packages
  # the first is importing.
  marker=/tmp/site/.wheels-$(ls .whl/*.whl | md5sum | cut -c1-12)
  if [ ! -f "$marker" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
      .whl/*.whl && touch "$marker" || exit 1
  fi
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}  # keeps e.g. an unpacked vLLM bundle after them
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # e.g. an unpacked vLLM bundle
fi
# Triton's kernel cache under /tmp too: the box keeps /tmp while warm, so a second call reuses the
# kernels the first compiled (the warm-cache sweep), and nothing is written outside /tmp. FlagGems'
# own tuner keeps its choices in FLAGGEMS_CACHE_DIR; TRITON_CACHE_AUTOTUNING keeps those of kernels
# that use plain triton.autotune.
export FLAGGEMS_CACHE_DIR=/tmp/cache/flaggems TRITON_CACHE_DIR=/tmp/cache/triton TRITON_CACHE_AUTOTUNING=1
export PYTHONUNBUFFERED=1
mkdir -p "$FLAGGEMS_CACHE_DIR"
# The carried cache seeds an empty one only: a later call on the same warm box keeps what it has learnt.
[ -f .gpu/flaggems-cache.tgz ] && [ -z "$(ls -A "$FLAGGEMS_CACHE_DIR")" ] && tar xzf .gpu/flaggems-cache.tgz -C /tmp/cache
# Likewise the choices of plain triton.autotune (TRITON_CACHE_AUTOTUNING): only their small
# *.autotune.json files travel (the compiled kernels, GBs, do not), so a fresh box with the same triton,
# GPU and FlagGems compiles each kernel's chosen config once instead of benchmarking all of them.
mkdir -p "$TRITON_CACHE_DIR"
[ -f .gpu/triton-autotune.tgz ] && [ -z "$(ls -A "$TRITON_CACHE_DIR")" ] && tar xzf .gpu/triton-autotune.tgz -C /tmp/cache
python3 -c "import expecttest" 2>/dev/null || echo "warning: expecttest is not importable: the OpInfo specs (kernels/aten/opinfo.py) cannot load; carry its wheel in .whl/" >&2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
# A run started on an earlier machine continues from its results carried in .gpu/<name>/.
seed=".gpu/$(basename "$run_dir")"
if [ ! -f "$run_dir/results.jsonl" ] && [ -f "$seed/results.jsonl" ]; then
  mkdir -p "$run_dir" && cp "$seed"/*.json* "$run_dir"/
fi
# A run cut by the time limit is finished by the next call (back to back, while the box is warm).
resume=(); [ -f "$run_dir/results.jsonl" ] && resume=(--resume)
timeout -k 10 "${RUN_TIMEOUT:-540}" python3 -m portability run --out "$run_dir" "${resume[@]}" "$@"
rc=$?
[ $rc -ne 0 ] && python3 -m portability scorecard "$run_dir" >/dev/null  # a cut run still gets a scorecard
# The device tool brings back at most 8 files: the two read most, the rest of the run in one archive, and
# the two caches that seed the next box (copy them into .gpu/).
if [ -n "${OUT:-}" ]; then
  for f in results.jsonl scorecard.md; do
    [ -f "$run_dir/$f" ] && cp "$run_dir/$f" "$OUT/"
  done
  du -sh /tmp/cache/* > "$run_dir/cache-sizes.txt" 2>/dev/null
  tar czf "$OUT/run.tgz" -C "$run_dir" --exclude=results.jsonl --exclude=scorecard.md . 2>/dev/null
  tar czf "$OUT/flaggems-cache.tgz" -C /tmp/cache flaggems 2>/dev/null
  (cd /tmp/cache && find triton -name '*.autotune.json' -print0 | tar czf "$OUT/triton-autotune.tgz" --null -T -)
fi
exit $rc
