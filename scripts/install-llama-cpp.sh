#!/usr/bin/env bash
# llama.cpp for the tests, the benchmarks and GGUF export, from one pinned PyPI release of
# llama-cpp-python (PyPI has no binary wheel of it for Linux): its sdist carries llama.cpp's
# source, convert_hf_to_gguf.py and gguf-py. Both are kept outside the checkout, under
# ~/.cache/openft, so a fresh clone on the same machine builds nothing:
#   <cache>/src/        the unpacked sdist (vendor/llama.cpp: the converter GGUF export runs)
#   <cache>/wheels/KEY/ the wheel, built for this CPU (-march=native): KEY hashes the CPU's flags,
#                       so a machine with other instructions builds its own
# and the wheel is installed into the virtualenv given as $1.
# Usage: scripts/install-llama-cpp.sh .venv
set -euo pipefail
VENV=${1:?usage: $0 VENV}
VERSION=0.3.36
CACHE=$HOME/.cache/openft/llama-cpp-python-$VERSION
PIP="$VENV/bin/pip"
mkdir -p "$CACHE"

if [ ! -f "$CACHE/src/.unpacked" ]; then
  "$PIP" download -q --no-deps --no-binary :all: -d "$CACHE" "llama-cpp-python==$VERSION"
  rm -rf "$CACHE/src" && mkdir -p "$CACHE/src"
  tar xzf "$CACHE/llama_cpp_python-$VERSION.tar.gz" -C "$CACHE/src" --strip-components=1
  touch "$CACHE/src/.unpacked"
fi

KEY=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | sort | sha256sum | cut -c1-16)
WHEELS="$CACHE/wheels/$KEY"
if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "Building llama-cpp-python $VERSION for this CPU (once per machine; ~15 min on 2 cores)..."
  start=$(date +%s)
  # Only the library: no tests, examples, tools or curl (nothing here downloads models).
  CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_CURL=OFF" \
    CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    "$PIP" wheel -q --no-deps -w "$WHEELS.partial" "$CACHE/llama_cpp_python-$VERSION.tar.gz"
  mv "$WHEELS.partial" "$WHEELS"
  echo "Built in $(( $(date +%s) - start )) s."
fi
"$PIP" install -q --no-warn-conflicts "$WHEELS"/llama_cpp_python-*.whl
