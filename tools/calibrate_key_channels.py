#!/usr/bin/env python3
"""Key-channel sensitivity of SmolLM2 in the numpy forward pass (the `key_pair_energy` rows of a codec profile):
the reference `kvstore.llama_engine.QueryEnergy` (tools/calibrate_llama.py) is tested against.

A quantisation error e in key channel i moves every attention logit by q_i * e, so the logit
distortion of a key channel is proportional to E[q_i^2] over the queries that read its KV head.
RoPE rotates pairs (2i, 2i+1) together, so both channels of a pair get the pair's mean energy.
The codec gives channel i the step multiplier (AM / w_i)^(gamma/2), which keeps the weighted
distortion of a uniform step and lowers the rate by up to 0.5 log2(AM/GM) bits per key value
(0.53 measured on average here).

Prints, per layer, round(4 * log2(w_i / AM_layer)) for each of the layer's kvHeads * 32 pairs
(quarter-octaves relative to the layer's arithmetic mean): the rows of `key_pair_energy`.

    python3 tools/calibrate_key_channels.py [TEXT] [--tokens 1024] > table.txt
The default text, northanger_abbey_ch1-2, is not one of the codec's evaluation texts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import kvmodel  # first: it picks BLAS threads before numpy loads
import numpy as np
from profile_io import quarter_octaves

HERE = Path(__file__).resolve().parent


def pair_energy(model, tokens):
    """[layers, kvHeads, pairs] mean query energy per RoPE pair, averaged over the query heads
    that share each KV head and over the tokens."""
    L, H, KVH, hd = model.n_layers, model.n_heads, model.n_kv_heads, model.head_dim
    G = H // KVH
    out = np.zeros((L, KVH, hd // 2))

    def on_query(layer, q):
        e = (q.astype(np.float64) ** 2).reshape(len(q), KVH, G, hd).mean(axis=(0, 2))
        out[layer] = (e[:, 0::2] + e[:, 1::2]) / 2

    model.forward(tokens, logits=False, on_query=on_query)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("text", nargs="?", default=str(HERE / "texts" / "northanger_abbey_ch1-2.txt"))
    ap.add_argument("--tokens", type=int, default=1024)
    a = ap.parse_args(argv)
    m = kvmodel.load_model()
    toks = m.tokenize(Path(a.text).read_text())[: a.tokens]
    if len(toks) < 64:
        sys.exit(f"error: {a.text} has only {len(toks)} tokens; calibration needs at least 64")
    codes = quarter_octaves(pair_energy(m, toks))
    gain = []
    for layer in codes:
        w = 2.0 ** (layer / 4)
        gain.append(0.5 * np.log2(w.mean() / np.exp(np.log(w).mean())))
    print(f"// {Path(a.text).name}, {len(toks)} tokens; mean 0.5 log2(AM/GM) = {np.mean(gain):.3f} bits")
    for layer in codes:
        print("        " + ", ".join(str(int(v)) for v in layer) + ",")


if __name__ == "__main__":
    main()
