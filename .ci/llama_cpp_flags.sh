# CMake flags for both llama.cpp builds (sourced by the two build scripts). Not -march=native:
# on a VM whose CPU reports AMX but does not give it to guests, ggml's AMX matmul segfaults on the
# first decode (seen here on Sapphire Rapids). AVX2/FMA/F16C is what every x86-64 machine of
# this decade has; the binary then runs on any of them.
LLAMA_CPP_CMAKE_FLAGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
LLAMA_CPP_PYTHON_VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
# the flags are part of the cache folder's name, so a build with other flags is never reused
LLAMA_CPP_BUILD_TAG=$LLAMA_CPP_PYTHON_VERSION-$(printf '%s' "$LLAMA_CPP_CMAKE_FLAGS" | sha256sum | cut -c1-8)
LLAMA_CPP_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/personahub
