#!/usr/bin/env bash
# Bounded libFuzzer run of the chunk decoder (Fuzz/DecoderFuzz): builds it with -sanitize=fuzzer
# (plus AddressSanitizer) and fuzzes for FUZZ_SECONDS (default 30). Exit status non-zero on a crash,
# a trap or a sanitizer report; the failing input is left in $FUZZ_DIR/artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
dir=${FUZZ_DIR:-.build-fuzz/run}
scratch=${FUZZ_SCRATCH:-.build-fuzz}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if ! swift build --scratch-path "$scratch" --product DecoderFuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xcc -fsanitize=address >"$log" 2>&1; then
    grep -E 'error' "$log" | head -20
    echo "fuzz: build failed" >&2
    exit 1
fi
bin="$scratch/debug/DecoderFuzz"
rm -rf "$dir"
mkdir -p "$dir/corpus" "$dir/artifacts"
# Seeds: each level's valid chunk, damaged a little (mode byte odd) and whole (mode byte even).
for level in 0 1 2 3 4; do
    printf "\\x$(printf %02x $((level * 2 + 1)))\\x10\\x00\\x01" >"$dir/corpus/damaged-$level"
done
printf '\x00KVCK' >"$dir/corpus/raw"
set +e
SWIFT_BACKTRACE=enable=no "$bin" "$dir/corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -artifact_prefix="$dir/artifacts/" -print_final_stats=1 >"$log" 2>&1
status=$?
set -e
grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units|ERROR|SUMMARY' "$log" || true
if [ $status -ne 0 ]; then
    tail -40 "$log"
    echo "fuzz: decoder failed; reproduce with: swift run DecoderFuzz $dir/artifacts/*" >&2
    exit 1
fi
echo "fuzz: decoder survived ${seconds}s"
