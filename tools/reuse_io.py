"""Helpers of the reuse tools (tests and bench_segments.py): run the kvstore binary, write and read
context files, and convert keys between RoPE pair conventions.

Kept to the few safetensors shapes kvstore uses (``kv`` F16/F32 + ``tokens`` I32 + metadata).
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def kvstore_bin() -> Path:
    return Path(os.environ.get("KVSTORE_BIN") or REPO / ".build" / "debug" / "kvstore")


def kvstore(*args, check=True) -> subprocess.CompletedProcess:
    """Runs the kvstore binary; with check, a non-zero exit raises with its stderr."""
    p = subprocess.run([str(kvstore_bin()), *map(str, args)], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"kvstore {' '.join(map(str, args))} exited {p.returncode}: {p.stderr.strip()}")
    return p


def write_context(path, kv, tokens, dtype="F16", metadata=None) -> None:
    """kv float32 [L, 2, T, H, D] -> safetensors with `kv` (dtype) and `tokens` (I32)."""
    np_dtype = {"F16": "<f2", "F32": "<f4"}[dtype]
    data = np.ascontiguousarray(kv, dtype=np.float32).astype(np_dtype).tobytes()
    toks = np.asarray(tokens, dtype="<i4").tobytes()
    header = {"kv": {"dtype": dtype, "shape": list(kv.shape), "data_offsets": [0, len(data)]},
              "tokens": {"dtype": "I32", "shape": [len(tokens)], "data_offsets": [len(data), len(data) + len(toks)]}}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data + toks)


def read_context(path):
    """-> (kv float32 [L, 2, T, H, D], raw kv array in its stored dtype, tokens list, metadata)."""
    raw = Path(path).read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    body = raw[8 + n:]
    e = header["kv"]
    dt = {"F16": "<f2", "F32": "<f4"}[e["dtype"]]
    stored = np.frombuffer(body[e["data_offsets"][0]:e["data_offsets"][1]], dtype=dt).reshape(e["shape"])
    t = header["tokens"]
    tokens = np.frombuffer(body[t["data_offsets"][0]:t["data_offsets"][1]], dtype="<i4").tolist()
    return stored.astype(np.float32), stored, tokens, header.get("__metadata__", {})


def adjacent_to_split(kv, rotary_dim=None):
    """Keys of an adjacent-pair (GGUF) model as the split-halves (HF) model computes them: per
    head, dim 2i -> i and dim 2i+1 -> i + r/2 for the rotary dims (values untouched)."""
    kv = np.array(kv, dtype=np.float32, copy=True)
    d = kv.shape[-1]
    r = rotary_dim or d
    perm = np.concatenate([np.arange(0, r, 2), np.arange(1, r, 2), np.arange(r, d)])
    kv[:, 0] = kv[:, 0][..., perm]
    return kv
