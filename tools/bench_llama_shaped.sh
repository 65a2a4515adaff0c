#!/usr/bin/env bash
# tools/bench_llama.py's remote mode over a shaped link: everything runs in a fresh network
# namespace whose loopback is limited by a tbf qdisc (default 100mbit), so the KV streamed from
# `kvstore serve` to the sidecar crosses that link (slot files stay on /dev/shm, not the network).
# Needs root (ip netns, tc). Usage: tools/bench_llama_shaped.sh [RATE] [bench_llama.py options...]
set -euo pipefail
cd "$(dirname "$0")/.."
rate=${1:-100mbit}
shift || true
ns=kvs-bench-$$
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
# An Ethernet MTU: with lo's 64 KiB MTU, packets larger than the 32 KiB bucket never pass.
ip netns exec "$ns" ip link set lo mtu 1500 up
ip netns exec "$ns" tc qdisc add dev lo root tbf rate "$rate" burst 32kb latency 50ms
echo "link: loopback of namespace $ns shaped by tbf rate $rate burst 32kb latency 50ms"
ip netns exec "$ns" python3 tools/bench_llama.py --modes remote --levels 0,1,2,3,4 "$@"
