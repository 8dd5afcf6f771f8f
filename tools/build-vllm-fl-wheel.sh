#!/usr/bin/env bash
# Build vllm-plugin-FL's pure-Python wheel and fetch the pure-Python runtime wheels a GPU box may lack, for
# the `vllm-fl` serving engine (the plugin is not on PyPI). Run it on a machine with a package registry;
# carry OUT_DIR to the box (e.g. as .whl/, which tools/gpu-run.sh installs with --no-deps).
#
# usage: [PYTHON=python3] [VERSION=0.2.0+g38e7dbc] tools/build-vllm-fl-wheel.sh SRC OUT_DIR
#   SRC      a vllm-plugin-FL source tree (a clone, or `git --git-dir=REPO archive HEAD | tar -x -C SRC`)
#   OUT_DIR  where the wheels go: vllm_plugin_fl-*.whl, PyYAML (cp312, manylinux2014_x86_64), nvidia-ml-py
#   PYTHON   the Python that builds the wheel; it needs setuptools and setuptools-scm (no build isolation)
#   VERSION  the plugin's version; without it setuptools-scm reads SRC's git history, and a tree with no
#            .git (an archive export) gets the plugin's fallback version 0.0.0
# VLLM_VENDOR is unset for the build, so no C++ extension is built: the wheel is py3-none-any.
set -euo pipefail

usage="usage: tools/build-vllm-fl-wheel.sh SRC OUT_DIR"
if [ $# -ne 2 ]; then
  echo "$usage" >&2
  exit 2
fi
src=$1 out=$2
python=${PYTHON:-python3}

if [ ! -d "$src" ]; then
  echo "error: source directory '$src' does not exist ($usage)" >&2
  exit 2
fi
if [ ! -f "$src/pyproject.toml" ]; then
  echo "error: '$src' has no pyproject.toml: not a vllm-plugin-FL source tree" >&2
  exit 2
fi
if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: no Python '$python' (set PYTHON=...)" >&2
  exit 2
fi
if ! "$python" -c "import setuptools, setuptools_scm" >/dev/null 2>&1; then
  echo "error: $python lacks setuptools and/or setuptools-scm, which the no-isolation build needs:" >&2
  echo "       $python -m pip install setuptools setuptools-scm" >&2
  exit 2
fi

mkdir -p "$out"
if [ -n "${VERSION:-}" ]; then
  export SETUPTOOLS_SCM_PRETEND_VERSION_FOR_VLLM_PLUGIN_FL=$VERSION
fi
# Pure Python only: VLLM_VENDOR selects the plugin's C++ extension build.
env -u VLLM_VENDOR "$python" -m pip wheel --no-deps --no-build-isolation -w "$out" "$src"

# The plugin's one runtime requirement (PyYAML) and the NVML bindings, for a Python 3.12 GPU box.
"$python" -m pip download --no-deps --python-version 3.12 --only-binary=:all: \
  --platform manylinux2014_x86_64 -d "$out" pyyaml nvidia-ml-py

echo "wheels in $out:"
ls -1 "$out"/*.whl
