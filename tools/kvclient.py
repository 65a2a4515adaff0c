#!/usr/bin/env python3
"""Command-line client of `kvstore serve`: a thin CLI over the `kvstore` Python package (python/),
which decodes every level through the project's own codec (libkvstore_c).

usage: kvclient.py URL lookup TOKENS.json [--token T] [--model M] [--dtype D]
       kvclient.py URL stream TOKENS.json [--slo-ms 1000] [--level N] [--token T] [--model M] [--dtype D] [-o OUT.npy]
       kvclient.py URL put CONTEXT.safetensors [--token T] [--model M] [--levels 0,2,4]

TOKENS.json is a JSON array of token ids. `stream` prints each chunk as it is decoded and saves the
KV of the contiguous prefix ([layers, 2, tokens, kv_heads, head_dim]) with -o.
Without an installed package, the one in this checkout is used (its library from $KVSTORE_C_LIB or
.build/{release,debug}/libkvstore_c.so).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

try:
    import kvstore
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))
    import kvstore

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url")
    ap.add_argument("command", choices=["lookup", "stream", "put"])
    ap.add_argument("file")
    ap.add_argument("--token")
    ap.add_argument("--slo-ms", type=float, default=1000)
    ap.add_argument("--level", type=int)
    ap.add_argument("--levels", help="put: levels to store, e.g. 0,2,4")
    ap.add_argument("--model", help="model id, when the server stores several")
    ap.add_argument("--dtype", help="lookup/stream: F16, BF16 or F32, when the server stores several")
    ap.add_argument("-o", "--output")
    a = ap.parse_args(argv)
    try:
        client = kvstore.Client(a.url, a.token)
        if a.command == "put":
            levels = [int(x) for x in a.levels.split(",")] if a.levels else None
            print(json.dumps(client.put(a.file, model=a.model, levels=levels)))
            return 0
        with open(a.file) as f:
            tokens = json.load(f)
        if a.command == "lookup":
            print(json.dumps(client.lookup(tokens, model=a.model, dtype=a.dtype)))
            return 0
        with client.stream(tokens, slo_ms=a.slo_ms, level=a.level, model=a.model, dtype=a.dtype) as s:
            if not s.found:
                print("no stored prefix")
                return 3
            for c in s:
                level = "recompute" if c.recompute else f"L{c.level}"
                print(f"chunk {c.index:3d} tokens {c.start}..{c.end} {level} {c.nbytes} B "
                      f"decoded at {c.decoded_at * 1000:.1f} ms", flush=True)
            kv = s.kv()
        print(f"{s.nbytes} B, time to last byte {(s.last_byte or 0) * 1000:.1f} ms; "
              f"{s.kv_tokens} tokens of KV")
        if a.output and kv is not None:
            np.save(a.output, kv)
        return 0
    except kvstore.KVStoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
