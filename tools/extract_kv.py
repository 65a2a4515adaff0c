#!/usr/bin/env python3
"""Extract a real KV cache of SmolLM2-135M-Instruct for the first N tokens of a text.

usage: extract_kv.py TEXTFILE OUT.safetensors --tokens N [--dtype f16|bf16|f32]
                     [--offset-tokens K] [--block 512]

Writes tensors
  kv      [layers, 2, N, kv_heads, head_dim]  (0 = keys after RoPE, 1 = values)
  tokens  [N] int32
and metadata model / rope_theta / rope_dim / rope_pairs ("adjacent") /
n_layers / n_kv_heads / head_dim / offset_tokens.
With --offset-tokens K the window is tokens K..K+N-1 of the text, still at
positions 0..N-1 (the model sees only that window).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kvmodel  # noqa: E402  (first: it picks the BLAS thread count before numpy loads)
import numpy as np  # noqa: E402
import st_io  # noqa: E402


def text_tokens(path, model=None) -> list[int]:
    m = model or kvmodel.load_model()
    with open(path, encoding="utf-8") as f:
        return m.tokenize(f.read())


def kv_metadata(model, n, offset=0) -> dict:
    rc = model.rope_config()
    return {"model": kvmodel.MODEL_NAME, "rope_theta": repr(float(rc["theta"])),
            "rope_dim": str(rc["rotary_dim"]), "rope_pairs": rc["pairs"],
            "n_layers": str(model.n_layers), "n_kv_heads": str(model.n_kv_heads),
            "head_dim": str(model.head_dim), "n_tokens": str(n),
            "offset_tokens": str(offset)}


def write_kv(path, kv, tokens, dtype="f16", metadata=None) -> None:
    st_dt = st_io.norm_dtype(dtype)
    if st_dt not in ("F16", "BF16", "F32"):
        raise ValueError(f"--dtype must be f16, bf16 or f32, not {dtype}")
    st_io.save(path, {"kv": st_io.Tensor(kv.astype(np.float32, copy=False), st_dt),
                      "tokens": np.asarray(tokens, dtype=np.int32)}, metadata or {})


def extract(text_path, n, offset=0, block=512, progress=True, model=None):
    """-> (kv float32 [L,2,n,KVH,hd], tokens list, model)."""
    m = model or kvmodel.load_model()
    toks = text_tokens(text_path, m)
    if n <= 0:
        raise SystemExit("error: --tokens must be positive")
    if offset < 0 or offset + n > len(toks):
        raise SystemExit(f"error: {text_path} has only {len(toks)} tokens; "
                         f"need {offset + n} (offset {offset} + {n})")
    win = toks[offset:offset + n]
    kv = m.extract_kv(win, block=block, progress=progress and n > block)
    return kv, win, m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text")
    ap.add_argument("out")
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--dtype", default="f16", choices=["f16", "bf16", "f32"])
    ap.add_argument("--offset-tokens", type=int, default=0)
    ap.add_argument("--block", type=int, default=512, help="tokens per forward block")
    a = ap.parse_args(argv)
    t0 = time.time()
    kv, toks, m = extract(a.text, a.tokens, a.offset_tokens, a.block)
    write_kv(a.out, kv, toks, a.dtype, kv_metadata(m, a.tokens, a.offset_tokens))
    size = os.path.getsize(a.out)
    print(f"{a.out}: kv {list(kv.shape)} {a.dtype} + tokens [{len(toks)}] int32, "
          f"{size} bytes, {time.time() - t0:.1f}s "
          f"(text {os.path.basename(a.text)}, tokens {a.offset_tokens}..{a.offset_tokens + a.tokens - 1})")


if __name__ == "__main__":
    main()
