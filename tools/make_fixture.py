#!/usr/bin/env python3
"""Write the small real-KV test fixtures used by the Swift tests.

usage: make_fixture.py [--out-dir Tests/Fixtures] [--text tools/texts/emma_ch1.txt]

Files (all from the first tokens of text 1, Emma chapter I):
  smollm2_ctx96_f16.safetensors   kv [30,2,96,3,64] F16 + tokens [96] I32
  smollm2_ctx96_f16.tokens.json   first 200 token ids of the text (JSON array), so a
                                  test can build an extended query past the 96 tokens
  smollm2_ctx40_bf16.safetensors  kv [30,2,40,3,64] BF16 + tokens [40] I32
  smollm2_ctx40_f32.safetensors   kv [30,2,40,3,64] F32 + tokens [40] I32
The ctx40 KV is the first 40 tokens of the same computation (causal, so identical
to running 40 tokens alone up to float rounding).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import extract_kv  # noqa: E402
import kvmodel  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--out-dir", default=os.path.join(os.path.dirname(HERE), "Tests", "Fixtures"))
    ap.add_argument("--text", default=os.path.join(HERE, "texts", "emma_ch1.txt"))
    a = ap.parse_args(argv)
    os.makedirs(a.out_dir, exist_ok=True)
    m = kvmodel.load_model()
    toks = extract_kv.text_tokens(a.text, m)
    if len(toks) < 200:
        raise SystemExit(f"error: {a.text} has only {len(toks)} tokens, need 200")
    kv96 = m.extract_kv(toks[:96])
    kv40 = m.extract_kv(toks[:40])
    text_name = os.path.basename(a.text)
    jobs = [("smollm2_ctx96_f16.safetensors", kv96, toks[:96], "f16"),
            ("smollm2_ctx40_bf16.safetensors", kv40, toks[:40], "bf16"),
            ("smollm2_ctx40_f32.safetensors", kv40, toks[:40], "f32")]
    for name, kv, tk, dt in jobs:
        meta = extract_kv.kv_metadata(m, len(tk))
        meta["text"] = text_name
        p = os.path.join(a.out_dir, name)
        extract_kv.write_kv(p, kv, tk, dt, meta)
        print(f"{p}: kv {list(kv.shape)} {dt}, {os.path.getsize(p)} bytes")
    p = os.path.join(a.out_dir, "smollm2_ctx96_f16.tokens.json")
    with open(p, "w") as f:
        json.dump([int(t) for t in toks[:200]], f)
        f.write("\n")
    print(f"{p}: 200 token ids")


if __name__ == "__main__":
    main()
