#!/usr/bin/env bash
# The whole test suite: Swift tests, the Python tools' tests, and bounded decoder and RESP parser fuzz runs.
# Fails when any runner fails or when a runner ran no test.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh || exit 1

log=$(mktemp)
trap 'rm -f "$log"' EXIT

swift build --build-tests >"$log" 2>&1
status=$?
grep -E 'error:|warning: unre' "$log"
[ $status -eq 0 ] || { tail -40 "$log"; echo "build failed" >&2; exit 1; }

swift test --skip-build >"$log" 2>&1
status=$?
# Failures in full, then the closing summary.
grep -E '✘|error:|Fatal|Test run with' "$log"
[ $status -eq 0 ] || { echo "swift test failed (status $status)" >&2; exit 1; }
grep -Eq 'Test run with [1-9][0-9]* tests? .*passed' "$log" || { echo "swift test ran no test" >&2; exit 1; }

export KVSTORE_BIN="$PWD/.build/debug/kvstore"
# The Python package's tests (and its pip install test) load the debug build of libkvstore_c.
export KVSTORE_C_LIB="$PWD/.build/debug/libkvstore_c.so"
python3 -m pytest -q tools/tests
status=$?
[ $status -eq 5 ] && { echo "pytest ran no test" >&2; exit 1; }
[ $status -eq 0 ] || exit 1

if [ -x tools/fuzz_decoder.sh ]; then tools/fuzz_decoder.sh || exit 1; fi
if [ -x tools/fuzz_resp.sh ]; then tools/fuzz_resp.sh || exit 1; fi
echo "all tests passed"
