"""Helpers of the reuse tools (tests and bench_segments.py): run the kvstore binary, write and read
context files (through st_io), and convert keys between RoPE pair conventions.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_io  # noqa: E402

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
    """kv float32 [L, 2, T, H, D] -> a kvstore context file (`kv` in dtype, `tokens` I32)."""
    st_io.save(path, {"kv": st_io.Tensor(np.asarray(kv, np.float32), dtype),
                      "tokens": np.asarray(tokens, dtype=np.int32)}, metadata or {})


def read_context(path):
    """-> (kv as float32, kv in its stored dtype, tokens list, metadata)."""
    tensors, meta = st_io.load(path)
    kv = tensors["kv"]
    return kv.astype(np.float32), kv, tensors["tokens"].tolist(), meta


def adjacent_to_split(kv, rotary_dim=None):
    """Keys of an adjacent-pair (GGUF) model as the split-halves (HF) model computes them: per
    head, dim 2i -> i and dim 2i+1 -> i + r/2 for the rotary dims (values untouched)."""
    kv = np.array(kv, dtype=np.float32, copy=True)
    d = kv.shape[-1]
    r = rotary_dim or d
    perm = np.concatenate([np.arange(0, r, 2), np.arange(1, r, 2), np.arange(r, d)])
    kv[:, 0] = kv[:, 0][..., perm]
    return kv
