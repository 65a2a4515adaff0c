#!/usr/bin/env bash
# Starts a scratch 6-node Redis Cluster (3 masters + 3 replicas) on loopback, runs
# `kvstore bench cluster` against it (release build), and stops it. Usage:
#   tools/bench_cluster.sh [CONTEXT] [extra bench options...]
set -euo pipefail
cd "$(dirname "$0")/.."
context=${1:-Tests/Fixtures/smollm2_ctx96_f16.safetensors}
shift || true
bin=${KVSTORE_BIN:-.build/release/kvstore}
base=${REDIS_BASE_PORT:-27100}
dir=$(mktemp -d /tmp/kvstore-bench-cluster.XXXXXX)
cleanup() {
    for f in "$dir"/*/redis.pid; do [ -f "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT

nodes=()
for i in 0 1 2 3 4 5; do
    port=$((base + i))
    mkdir -p "$dir/$port"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir/$port" --logfile "$dir/$port/redis.log" \
        --cluster-enabled yes --cluster-config-file "$dir/$port/nodes.conf" --cluster-node-timeout 5000 \
        --appendonly no --save '' --daemonize yes --pidfile "$dir/$port/redis.pid" --protected-mode no
    nodes+=("127.0.0.1:$port")
done
for n in "${nodes[@]}"; do
    for _ in $(seq 100); do redis-cli -p "${n##*:}" ping >/dev/null 2>&1 && break; sleep 0.1; done
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
for _ in $(seq 300); do
    ok=1
    for n in "${nodes[@]}"; do redis-cli -p "${n##*:}" cluster info | grep -q cluster_state:ok || ok=0; done
    [ $ok = 1 ] && break
    sleep 0.1
done
echo "redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), cluster on ${nodes[*]}"
"$bin" bench cluster --cluster "redis://$(IFS=,; echo "${nodes[*]}")" --context "$context" "$@"
