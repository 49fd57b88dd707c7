#!/usr/bin/env bash
# Build llama.cpp's llama-server once per machine, from the vendor/llama.cpp folder of
# llama-cpp-python's PyPI sdist (the same llama.cpp the [llamacpp] extra compiles), into
# ~/.cache/personahub/llama-server-<tag>/ (outside the clone: CI on the same machine reuses it),
# with the portable CPU flags of .ci/llama_cpp_flags.sh.
# Prints the binary's path. About 8 minutes on 2 cores; nothing is downloaded but the sdist.
set -euo pipefail
# shellcheck source=/dev/null
source "$(dirname "$0")/llama_cpp_flags.sh"
version=$LLAMA_CPP_PYTHON_VERSION
target=$LLAMA_CPP_CACHE/llama-server-$LLAMA_CPP_BUILD_TAG/llama-server
if [ -x "$target" ]; then
  echo "$target"
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
pip download -q --no-binary :all: --no-deps "llama-cpp-python==$version" -d "$work" >&2
tar -xzf "$work/llama_cpp_python-$version.tar.gz" -C "$work"
source_dir=$work/llama_cpp_python-$version/vendor/llama.cpp
# no tests, examples, TLS or prebuilt web UI (that would be a download); static so the binary
# stands alone once the build folder is gone
cmake -S "$source_dir" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_USE_PREBUILT_UI=OFF $LLAMA_CPP_CMAKE_FLAGS >&2
cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$(dirname "$target")"
cp "$work/build/bin/llama-server" "$target.tmp"
mv "$target.tmp" "$target"
echo "$target"
