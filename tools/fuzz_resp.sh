#!/usr/bin/env bash
# Bounded libFuzzer run of the RESP parser (Fuzz/RESPFuzz), in the style of tools/fuzz_decoder.sh:
# builds it with -sanitize=fuzzer,address and fuzzes for FUZZ_SECONDS (default 20). Exit status
# non-zero on a crash, a trap or a sanitizer report; the failing input is left in $FUZZ_DIR/artifacts.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}
dir=${FUZZ_DIR:-.build-fuzz/resp-run}
scratch=${FUZZ_SCRATCH:-.build-fuzz}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

if ! swift build --scratch-path "$scratch" --product RESPFuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xcc -fsanitize=address >"$log" 2>&1; then
    grep -E 'error' "$log" | head -20
    echo "fuzz: build failed" >&2
    exit 1
fi
bin="$scratch/debug/RESPFuzz"
rm -rf "$dir"
mkdir -p "$dir/corpus" "$dir/artifacts"
# Seeds: one of each reply type, a pipelined pair, nesting, and the shapes of real cluster replies.
printf '+OK\r\n' >"$dir/corpus/simple"
printf -- '-MOVED 3999 127.0.0.1:6381\r\n' >"$dir/corpus/moved"
printf ':1000\r\n:-1\r\n' >"$dir/corpus/integers"
printf '$5\r\nhello\r\n$-1\r\n' >"$dir/corpus/bulk"
printf '*2\r\n*3\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$4\r\nabcd\r\n*-1\r\n' >"$dir/corpus/slots"
printf '*1\r\n*1\r\n*1\r\n*0\r\n' >"$dir/corpus/nested"
set +e
SWIFT_BACKTRACE=enable=no "$bin" "$dir/corpus" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -artifact_prefix="$dir/artifacts/" -print_final_stats=1 >"$log" 2>&1
status=$?
set -e
grep -E '^#[0-9]+ +DONE|stat::number_of_executed_units|ERROR|SUMMARY' "$log" || true
if [ $status -ne 0 ]; then
    tail -40 "$log"
    echo "fuzz: RESP parser failed; reproduce with: swift run RESPFuzz $dir/artifacts/*" >&2
    exit 1
fi
echo "fuzz: RESP parser survived ${seconds}s"
