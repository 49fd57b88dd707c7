#!/usr/bin/env bash
# Build the llama-cpp-python wheel ([llamacpp] extra) once per machine with portable CPU flags
# (.ci/llama_cpp_flags.sh says why) into ~/.cache/personahub/wheels-<tag>/; prints that folder,
# for `pip install --find-links`. 10-20 minutes on 2 cores the first time.
set -euo pipefail
# shellcheck source=/dev/null
source "$(dirname "$0")/llama_cpp_flags.sh"
wheels=$LLAMA_CPP_CACHE/wheels-$LLAMA_CPP_BUILD_TAG
if ! ls "$wheels"/llama_cpp_python-"$LLAMA_CPP_PYTHON_VERSION"-*.whl >/dev/null 2>&1; then
  mkdir -p "$wheels"
  CMAKE_ARGS=$LLAMA_CPP_CMAKE_FLAGS CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    pip wheel -q --no-deps --no-cache-dir --no-binary llama-cpp-python -w "$wheels.tmp" \
    "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" >&2
  mv "$wheels.tmp"/llama_cpp_python-*.whl "$wheels"/
  rm -rf "$wheels.tmp"
fi
echo "$wheels"
