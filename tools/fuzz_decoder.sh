#!/usr/bin/env bash
# Bounded libFuzzer runs of the project's fuzz targets, each built with -sanitize=fuzzer (plus
# AddressSanitizer):
#   DecoderFuzz  the chunk decoder (Fuzz/DecoderFuzz), FUZZ_SECONDS (default 30);
#   ParserFuzz   safetensors files, JSON token queries and stream frames (Fuzz/ParserFuzz),
#                FUZZ_PARSER_SECONDS (default 20).
# The per-input timeout is generous (120 s): the first input builds the seeds (lossy encodes under
# AddressSanitizer), which takes seconds on a loaded machine; a real hang still trips it.
# Exit status non-zero on a crash, a trap or a sanitizer report; the failing input is left in
# $FUZZ_DIR/<target>/artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${FUZZ_DIR:-.build-fuzz/run}
scratch=${FUZZ_SCRATCH:-.build-fuzz}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

build() {
    if ! swift build --scratch-path "$scratch" --product "$1" \
        -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xcc -fsanitize=address >"$log" 2>&1; then
        grep -E 'error' "$log" | head -20
        echo "fuzz: build of $1 failed" >&2
        exit 1
    fi
}

# run TARGET SECONDS: fuzzes $dir/TARGET/corpus, already seeded.
run() {
    local target=$1 seconds=$2 status
    set +e
    SWIFT_BACKTRACE=enable=no "$scratch/debug/$target" "$dir/$target/corpus" -max_total_time="$seconds" -timeout=120 \
        -rss_limit_mb=2048 -max_len=4096 -artifact_prefix="$dir/$target/artifacts/" -print_final_stats=1 >"$log" 2>&1
    status=$?
    set -e
    grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units|ERROR|SUMMARY' "$log" || true
    if [ $status -ne 0 ]; then
        tail -40 "$log"
        echo "fuzz: $target failed; reproduce with: swift run $target $dir/$target/artifacts/*" >&2
        exit 1
    fi
    echo "fuzz: $target survived ${seconds}s"
}

rm -rf "$dir"
for target in DecoderFuzz ParserFuzz; do mkdir -p "$dir/$target/corpus" "$dir/$target/artifacts"; done

build DecoderFuzz
# Seeds: each level's valid chunk, damaged a little (mode byte odd) and whole (mode byte even).
for level in 0 1 2 3 4; do
    printf "\\x$(printf %02x $((level * 2 + 1)))\\x10\\x00\\x01" >"$dir/DecoderFuzz/corpus/damaged-$level"
done
printf '\x00KVCK' >"$dir/DecoderFuzz/corpus/raw"
run DecoderFuzz "${FUZZ_SECONDS:-30}"

build ParserFuzz
# Seeds: a real context file, a token query, and frames.
python3 - "$dir/ParserFuzz/corpus/safetensors" <<'PY'
import json, struct, sys
h = json.dumps({"__metadata__": {"model": "m"}, "kv": {"dtype": "F16", "shape": [1, 2, 2, 1, 2], "data_offsets": [0, 16]},
                "tokens": {"dtype": "I32", "shape": [2], "data_offsets": [16, 24]}}).encode()
h += b" " * (-len(h) % 8)
open(sys.argv[1], "wb").write(b"\x00" + struct.pack("<Q", len(h)) + h + bytes(range(16)) + struct.pack("<2i", 5, 6))
PY
printf '\x01[1, 2, 3, 2147483647]' >"$dir/ParserFuzz/corpus/tokens"
printf '\x02\x07KVF1' >"$dir/ParserFuzz/corpus/frames"
run ParserFuzz "${FUZZ_PARSER_SECONDS:-20}"
