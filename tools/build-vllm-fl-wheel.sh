#!/usr/bin/env bash
# Build vllm-plugin-FL's pure-Python wheel from a named branch or tag and fetch the pure-Python runtime
# wheels a GPU box may lack, for the `vllm-fl` serving engine (the plugin is not on PyPI). Run it on a
# machine with a package registry and GitHub; carry OUT_DIR to the box (e.g. as .whl/, which
# tools/gpu-run.sh installs with --no-deps).
#
# usage: [PYTHON=python3] tools/build-vllm-fl-wheel.sh REF OUT_DIR [REPO]
#   REF      the plugin's branch or tag. Which vLLM each branch targets (the plugin README's "Version
#            Compatibility" table): release/0.2 -> vLLM 0.20.2, main -> vLLM 0.28.0.
#   OUT_DIR  where the wheels go: vllm_plugin_fl-*.whl, PyYAML (cp312, manylinux2014_x86_64), nvidia-ml-py
#   REPO     a clone or URL of vllm-plugin-FL (default https://github.com/flagos-ai/vllm-plugin-FL)
#   PYTHON   the Python that builds the wheel; it needs setuptools (and setuptools-scm for a tree whose
#            version is not static), as the build runs without isolation
#   DOWNLOAD=0  build the plugin's wheel only (no PyYAML / nvidia-ml-py download)
# The wheel's version gets the branch and commit as its local label (0.1.0+release.0.2.gabc1234): the
# plugin declares no vLLM in its metadata, and the serving engine reads the branch back from there to pair
# the plugin with the vLLM it targets (portability/serving/engines/vllm_fl.py). Only that version string
# is changed, in a temporary export; VLLM_VENDOR is unset, so no C++ extension is built (py3-none-any).
set -euo pipefail

usage="usage: tools/build-vllm-fl-wheel.sh REF OUT_DIR [REPO]"
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "$usage" >&2
  exit 2
fi
ref=$1 out=$2 repo=${3:-https://github.com/flagos-ai/vllm-plugin-FL}
python=${PYTHON:-python3}

if ! command -v "$python" >/dev/null 2>&1; then
  echo "error: no Python '$python' (set PYTHON=...)" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if ! git clone --quiet --depth 1 --branch "$ref" "$repo" "$work/src" 2>"$work/clone.err"; then
  echo "error: cannot check out branch or tag '$ref' of $repo: $(tail -1 "$work/clone.err")" >&2
  exit 2
fi
src=$work/src
if [ ! -f "$src/pyproject.toml" ]; then
  echo "error: '$ref' of $repo has no pyproject.toml: not a vllm-plugin-FL source tree" >&2
  exit 2
fi
commit=$(git -C "$src" rev-parse --short=7 HEAD)
slug=$(printf '%s' "$ref" | tr -c 'A-Za-z0-9\n' '.')
# The version the tree declares (a static [project] version, else setuptools-scm's, which a shallow
# clone cannot derive: 0.0.0), with the branch and commit as its local label.
base=$(sed -n 's/^version *= *"\([^"+]*\).*"/\1/p' "$src/pyproject.toml" | head -1)
version="${base:-0.0.0}+${slug}.g${commit}"
needs="setuptools"
if [ -n "$base" ]; then
  sed -i "0,/^version *= *\"[^\"]*\"/s//version = \"$version\"/" "$src/pyproject.toml"
else
  needs="setuptools, setuptools_scm"
fi
if ! "$python" -c "import $needs" >/dev/null 2>&1; then
  echo "error: $python lacks ${needs/_/-}, which the no-isolation build needs" >&2
  exit 2
fi
export SETUPTOOLS_SCM_PRETEND_VERSION_FOR_VLLM_PLUGIN_FL=$version

mkdir -p "$out"
env -u VLLM_VENDOR "$python" -m pip wheel --no-deps --no-build-isolation -w "$out" "$src"

# The plugin's one runtime requirement (PyYAML) and the NVML bindings, for a Python 3.12 GPU box.
[ "${DOWNLOAD:-1}" = 0 ] || "$python" -m pip download --no-deps --python-version 3.12 --only-binary=:all: \
  --platform manylinux2014_x86_64 -d "$out" pyyaml nvidia-ml-py

echo "vllm-plugin-FL $version ($ref at $commit); wheels in $out:"
ls -1 "$out"/*.whl
