#!/usr/bin/env bash
# Builds llama.cpp (libllama + llama-server) pinned to the commit bundled in the PyPI sdist
# llama-cpp-python==0.3.36 (vendor/llama.cpp at 0c1e570), into a cache directory reused across runs.
# Safe to run again: fetches, unpacks and builds only what is missing (ninja rebuilds nothing when
# the outputs are current). Prints the build's bin directory on stdout.
#
# Layout (stable: tests, benchmarks, the demo and the Python bindings use it; see docs/llama.md):
#   $LLAMA_HOME = ${KVSTORE_CACHE:-$HOME/.cache/kvstore}/llama.cpp-0c1e570
#   $LLAMA_HOME/llama_cpp_python-0.3.36/       the unpacked sdist (Python bindings in llama_cpp/)
#   $LLAMA_HOME/build/bin/libllama.so, libggml*.so, llama-server
set -euo pipefail

VERSION=0.3.36
LLAMA_HOME="${KVSTORE_CACHE:-$HOME/.cache/kvstore}/llama.cpp-0c1e570"
SDIST_DIR="$LLAMA_HOME/llama_cpp_python-$VERSION"
BUILD="$LLAMA_HOME/build"
mkdir -p "$LLAMA_HOME"

log() { echo "build_llama: $*" >&2; }

# cmake and ninja from their PyPI wheels (never built from source).
if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
  log "installing cmake and ninja (wheels)"
  python3 -m pip install -q --only-binary :all: cmake ninja
  hash -r
fi

if [ ! -f "$SDIST_DIR/vendor/llama.cpp/CMakeLists.txt" ]; then
  tarball=$(ls "$LLAMA_HOME"/llama_cpp_python-$VERSION.tar.gz 2>/dev/null || true)
  if [ -z "$tarball" ]; then
    log "downloading the llama-cpp-python==$VERSION sdist"
    # The package ships no wheels, so this fetches the sdist; --no-deps keeps pip from resolving
    # (and building) anything else.
    python3 -m pip download -q --no-deps --no-binary llama-cpp-python -d "$LLAMA_HOME" \
      "llama-cpp-python==$VERSION"
    tarball="$LLAMA_HOME/llama_cpp_python-$VERSION.tar.gz"
  fi
  log "unpacking $tarball"
  tar -xzf "$tarball" -C "$LLAMA_HOME"
fi

need_build=0
for f in "$BUILD/bin/libllama.so" "$BUILD/bin/llama-server"; do
  [ -e "$f" ] || need_build=1
done
if [ "$need_build" = 1 ]; then
  if [ ! -f "$BUILD/build.ninja" ]; then
    log "configuring"
    cmake -S "$SDIST_DIR/vendor/llama.cpp" -B "$BUILD" -G Ninja \
      -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
      -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF >&2
  fi
  log "building libllama and llama-server (several minutes)"
  nice ninja -C "$BUILD" -j"${LLAMA_BUILD_JOBS:-2}" llama llama-server >&2
fi
echo "$BUILD/bin"
