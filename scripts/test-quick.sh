#!/usr/bin/env bash
# The quick tier: unit tests of the pure modules (tensor, codec, store, transport, in-process server
# routes) in a debug build, then the codec's tests again in a release build, where the SIMD kernels
# and the encoder run as users run them. No server processes, no Redis cluster, no llama.cpp: those
# are the full tier (scripts/test.sh, what CI runs). Needs what scripts/setup.sh installs.
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS

# Suites that shape links with network namespaces (the rest of KVServerTests runs in process).
skip='ShapedLinkTests'
unit='^(KVTensorTests|KVCodecTests|KVStoreTests|KVTransportTests|KVServerTests)\.'

run() { # label, then the swift test arguments
  local label=$1; shift
  swift test "$@" >"$log" 2>&1
  local status=$?
  grep -E '✘|error:|Fatal|Test run with' "$log"
  [ $status -eq 0 ] || { tail -20 "$log"; echo "$label failed (status $status)" >&2; exit 1; }
  grep -Eq 'Test run with [1-9][0-9]* tests? .*passed' "$log" || { echo "$label ran no test" >&2; exit 1; }
}

run "unit tests (debug)" --filter "$unit" --skip "$skip"
run "codec tests (release)" -c release --filter '^KVCodecTests\.'
echo "quick tier passed in $((SECONDS - start)) s"
