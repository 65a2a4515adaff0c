#!/usr/bin/env bash
# The main job on the embedded default store: extract a real context with SmolLM2, put it,
# get it back by a longer prompt, and show the match and the sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

swift build -c release --product kvstore 2>&1 | grep -E 'error|warning: unre|Compiling kvstore|Build' >&2 || true
KV=.build/release/kvstore
[ -x "$KV" ] || { echo "demo: build failed" >&2; exit 1; }
work=${TMPDIR:-/tmp}/kvstore-demo
mkdir -p "$work"
text=tools/texts/emma_ch1.txt

echo "== extracting the real KV of 1024 tokens of $text with SmolLM2-135M"
python3 tools/extract_kv.py "$text" "$work/context.safetensors" --tokens 1024

echo "== kvstore put (default store: ${KVSTORE_HOME:-~/.local/share/kvstore})"
# The GGUF's profile (calibrated through llama.cpp) is filed for the numpy KV of the same weights.
"$KV" profile add profiles/SmolLM2-135M-Instruct-Q4_1.json --model SmolLM2-135M-Instruct
"$KV" put "$work/context.safetensors" --name emma-ch1

echo "== kvstore get with a longer prompt: the same text, 1300 tokens"
python3 - "$text" "$work/query.json" <<'PY'
import json, sys
sys.path.insert(0, "tools")
import kvmodel
ids = kvmodel.tokenize(open(sys.argv[1], encoding="utf-8").read())[:1300]
json.dump(ids, open(sys.argv[2], "w"))
PY
"$KV" get --tokens "$work/query.json" -o "$work/prefix.safetensors"

echo "== the result is bit-identical to what was put"
python3 - "$work/context.safetensors" "$work/prefix.safetensors" <<'PY'
import sys
sys.path.insert(0, "tools")
import numpy as np, st_io
a, _ = st_io.load(sys.argv[1], raw_bf16=True)
b, _ = st_io.load(sys.argv[2], raw_bf16=True)
same = a["kv"].tobytes() == b["kv"].tobytes() and np.array_equal(a["tokens"], b["tokens"])
print("kv and tokens identical:", same)
sys.exit(0 if same else 1)
PY
"$KV" ls
"$KV" stat

echo "== llama.cpp through \`kvstore sidecar\`: a 4,000-token document + a question answered cold, then with its prefix from kvstore"
KVSTORE_BIN="$PWD/$KV" python3 tools/bench_llama.py --sizes 4000 --modes embedded --runs 1 --skip-partial --threads 1
