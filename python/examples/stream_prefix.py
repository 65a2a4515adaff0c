#!/usr/bin/env python3
"""Example: store a context in a `kvstore serve`, then load the KV of a longer prompt's stored
prefix the way an inference engine would: chunk by chunk, each decoded as soon as it arrives.

usage: stream_prefix.py URL CONTEXT.safetensors [--slo-ms 1000] [--level N] [--token T]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import kvstore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url")
    ap.add_argument("context")
    ap.add_argument("--slo-ms", type=float, default=1000)
    ap.add_argument("--level", type=int)
    ap.add_argument("--token")
    a = ap.parse_args()

    print(f"kvstore {kvstore.__version__}: {kvstore.library_version} ({kvstore.library_path})")
    client = kvstore.Client(a.url, a.token)
    report = client.put(a.context, levels=[0, 1, 2, 3, 4])
    print(f"put {report['tokens']} tokens in {report['chunks']} chunks, {report['storedBytes']} bytes stored")

    prompt = kvstore.read_safetensors(a.context).tokens.tolist() + [1, 2, 3]  # the stored context plus a new question
    found = client.lookup(prompt)
    print(f"lookup: {found['matched_tokens']} of {found['query_tokens']} tokens stored")

    t0 = time.monotonic()
    with client.stream(prompt, slo_ms=a.slo_ms, level=a.level) as stream:
        for chunk in stream:
            what = "recompute from text" if chunk.recompute else f"level {chunk.level}, kv {chunk.kv.shape} {chunk.kv.dtype}"
            print(f"chunk {chunk.index}: tokens {chunk.start}..{chunk.end} {what}, {chunk.nbytes} B, "
                  f"decoded at {chunk.decoded_at * 1000:.1f} ms")
        kv = stream.kv()
    ms = (time.monotonic() - t0) * 1000
    print(f"{stream.kv_tokens} tokens of KV in {ms:.1f} ms; prefill tokens {stream.kv_tokens}..{len(prompt)} from text")
    if kv is not None:
        print(f"kv {kv.shape} {kv.dtype}, finite: {bool(np.isfinite(kv.astype(np.float32)).all())}")


if __name__ == "__main__":
    main()
