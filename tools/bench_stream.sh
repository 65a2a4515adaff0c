#!/usr/bin/env bash
# Streamed-load benchmark of `kvstore serve` (needs root: network namespace + tbf qdisc).
#
# usage: tools/bench_stream.sh [CONTEXT.safetensors] [SLO_MS]
#   CONTEXT defaults to /work/data/ctx4096.safetensors (make it with
#   `python3 tools/extract_kv.py tools/texts/mansfield_park_ch1-2.txt /work/data/ctx4096.safetensors --tokens 4096`).
#   KVSTORE_BIN defaults to .build/release/kvstore (build with `swift build -c release`).
#
# 1. Shaped: server and client in a fresh namespace whose loopback is limited by
#    `tc qdisc add dev lo root tbf rate 100mbit burst 32kb latency 50ms`; prints adaptive vs fp16 raw
#    vs zstd vs fixed levels side by side.
# 2. Unshaped (the same namespace with the qdisc removed): stream throughput of stored chunks, and
#    64 concurrent streams.
# Only the namespace's own loopback is used; every loop is bounded; the namespace is removed on exit.
set -euo pipefail
CTX=${1:-/work/data/ctx4096.safetensors}
SLO=${2:-1000}
BIN=$(realpath "${KVSTORE_BIN:-.build/release/kvstore}")
[ -x "$BIN" ] || { echo "kvstore binary not found at $BIN (set KVSTORE_BIN)" >&2; exit 1; }
[ -f "$CTX" ] || { echo "context $CTX not found" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "skipped: needs root for ip netns / tc" >&2; exit 0; }

NS=kvs-bench-$$
TMP=$(mktemp -d)
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# Store every level this build encodes (lossless only until lossy levels land).
LEVELS=0
for l in 1 2 3 4; do
  if "$BIN" encode "$CTX" -o "$TMP/probe.kvc" --level "$l" >/dev/null 2>&1; then LEVELS="$LEVELS,$l"; fi
done
rm -f "$TMP/probe.kvc"
echo "== context $(basename "$CTX"), stored levels $LEVELS, 256-token chunks"
"$BIN" put "$CTX" --store "$TMP/store" --chunk-tokens 256 --levels "$LEVELS"

ip netns add "$NS"
# Ethernet MTU: with lo's 64 KiB MTU, packets larger than the 32 KiB tbf bucket would never pass.
ip netns exec "$NS" ip link set lo mtu 1500 up
ip netns exec "$NS" tc qdisc add dev lo root tbf rate 100mbit burst 32kb latency 50ms
ip netns exec "$NS" "$BIN" serve --store "$TMP/store" --listen 127.0.0.1:0 --port-file "$TMP/port" >/dev/null &
SERVER=$!
for _ in $(seq 1 300); do [ -s "$TMP/port" ] && break; sleep 0.1; done
PORT=$(cat "$TMP/port")
URL=http://127.0.0.1:$PORT

MODES=adaptive,raw,zstd
for l in ${LEVELS//,/ }; do MODES="$MODES,L$l"; done
echo
echo "== shaped link: tbf rate 100mbit burst 32kb latency 50ms, deadline $SLO ms, median of 3"
ip netns exec "$NS" timeout 300 "$BIN" bench stream --remote "$URL" --tokens "$CTX" --slo-ms "$SLO" --modes "$MODES" --runs 3 --bandwidth-hint-mbps 100

ip netns exec "$NS" tc qdisc del dev lo root
echo
echo "== unshaped loopback: stored-chunk stream throughput (lossless, one stream, median of 5; without and with client decoding)"
ip netns exec "$NS" timeout 300 "$BIN" bench stream --remote "$URL" --tokens "$CTX" --slo-ms 60000 --modes L0,L4 --runs 5 --no-decode
ip netns exec "$NS" timeout 300 "$BIN" bench stream --remote "$URL" --tokens "$CTX" --slo-ms 60000 --modes L0 --runs 5 --decode
echo
echo "== unshaped loopback: 64 concurrent streams (no client decoding), 3 runs"
ip netns exec "$NS" timeout 300 "$BIN" bench stream --remote "$URL" --tokens "$CTX" --slo-ms 60000 --modes adaptive --runs 3 --streams 64
