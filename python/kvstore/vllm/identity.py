"""The model id vLLM's KV is filed under: `vllm/<name>@sha256:<digest of the checkpoint's weights>`.

KV from vLLM differs from llama.cpp's for the same weights (kernels, dtype), so the id names the
engine; the digest names the exact checkpoint, as `llama.cpp/...@sha256:` does for a GGUF. The digest
covers every *.safetensors (or *.bin) file of the checkpoint directory in name order; it is
remembered by path, size and mtime under ${KVSTORE_CACHE:-~/.cache/kvstore}/vllm-ids.json.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

ENGINE = "vllm"


def weight_files(checkpoint: Path) -> list[Path]:
    files = sorted(checkpoint.glob("*.safetensors")) or sorted(checkpoint.glob("*.bin"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors or *.bin weights in {checkpoint}")
    return files


def weights_digest(checkpoint: Path) -> str:
    """SHA-256 over the weight files (name, size, bytes), in name order."""
    files = weight_files(checkpoint)
    stamp = [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]
    cache = Path(os.environ.get("KVSTORE_CACHE", Path.home() / ".cache/kvstore")) / "vllm-ids.json"
    try:
        known = json.loads(cache.read_text())
    except (OSError, ValueError):
        known = {}
    key = json.dumps(stamp)
    if isinstance(known.get(key), str):
        return known[key]
    h = hashlib.sha256()
    for f in files:
        h.update(f"{f.name}\0{f.stat().st_size}\0".encode())
        with open(f, "rb") as src:
            while block := src.read(1 << 22):
                h.update(block)
    digest = h.hexdigest()
    try:
        known[key] = digest
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known))
        tmp.replace(cache)
    except OSError:
        pass  # a cache that cannot be written costs a re-hash next time, nothing else
    return digest


def model_id(model: str) -> str:
    """The id for vLLM's `model` argument (a local checkpoint directory)."""
    path = Path(model)
    if not path.is_dir():
        raise ValueError(f"kvstore needs a local checkpoint directory to name the model, not {model!r} "
                         "(or give kv_connector_extra_config.model_id)")
    name = re.sub(r"[^A-Za-z0-9._-]", "-", path.resolve().name) or "model"
    return f"{ENGINE}/{name}@sha256:{weights_digest(path)}"
