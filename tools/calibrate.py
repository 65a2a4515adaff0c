#!/usr/bin/env python3
"""Calibrate the lossy codec for a model: writes a codec profile file (schemas/codec-profile.md).

    python3 tools/calibrate.py [TEXT] -o profiles/MODEL.json [--tokens 1024] [--continuation 256]
                               [--alpha 0.5] [--no-sensitivity] [--model-id ID]

What needs the model's forward pass (what `kvstore calibrate`, which sees only KV, cannot measure):
  * key_pair_energy: per layer, per (KV head, RoPE pair), round(4 log2(w / mean w)) of the query
    energy w = E[q^2] that reads the pair's key channels (tools/calibrate_key_channels.py);
  * group_step_weights: per (layer, K/V) sensitivity (KVTuner): the exact context KV with only
    that group quantised (channel means removed, uniform step alpha * RMS channel spread, as the
    codec's base step), KL of the continuation's predictions against the exact KV's;
    weight = sqrt(median KL / KL) clipped to 0.4...2.5 and rounded to 0.01 (step^2 ~ distortion,
    -log step ~ rate: equal marginal returns).
The RoPE of the keys comes from the model (kvmodel.rope_config). Calibrate on a text that is not
used for evaluation (default northanger_abbey_ch1-2).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import kvmodel  # first: it picks BLAS threads before numpy loads
import numpy as np

import calibrate_key_channels as keych
from profile_io import FORMAT, VERSION, profile_json, quarter_octaves

HERE = Path(__file__).resolve().parent


def quantise_group(x, alpha):
    """x [T, KVH, hd] float32 -> the codec's base quantiser applied: per-channel mean removed,
    one uniform step alpha * sqrt(mean over channels of the channel variance)."""
    T = x.shape[0]
    flat = x.reshape(T, -1).astype(np.float64)
    mean = flat.mean(0)
    rms = np.sqrt(((flat - mean) ** 2).mean(0).mean())
    step = max(alpha * rms, 1e-12)
    q = np.round((flat - mean) / step) * step + mean
    return q.astype(np.float32).reshape(x.shape)


def sensitivity_weights(model, ctx, cont, alpha, log=print):
    """[layers][2] step weights from one-group-at-a-time KL (see the module doc)."""
    kv = model.extract_kv(ctx)
    ref, _ = model.forward(cont, past_kv=kv)
    n = len(cont) - 1
    L = model.n_layers
    kl = np.zeros((L, 2))
    t0 = time.time()
    for layer in range(L):
        for kind in range(2):
            probe = kv.copy()
            probe[layer, kind] = quantise_group(kv[layer, kind], alpha)
            logits, _ = model.forward(cont, past_kv=probe)
            kl[layer, kind] = max(kvmodel.mean_kl(ref, logits, n), 1e-12)
        log(f"[calibrate] layer {layer + 1}/{L}: KL keys {kl[layer, 0]:.2e} values {kl[layer, 1]:.2e} ({time.time() - t0:.0f} s)")
    w = np.sqrt(np.median(kl) / kl)
    return np.round(np.clip(w, 0.4, 2.5), 2), kl


def rope_entry(model):
    r = model.rope_config()
    return {"theta": float(r["theta"]), "pairs": r["pairs"], "dim": int(r["rotary_dim"])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("text", nargs="?", default=str(HERE / "texts" / "northanger_abbey_ch1-2.txt"))
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--tokens", type=int, default=1024, help="context tokens")
    ap.add_argument("--continuation", type=int, default=256, help="continuation tokens scored for sensitivity")
    ap.add_argument("--alpha", type=float, default=0.5, help="base step of the sensitivity probes")
    ap.add_argument("--no-sensitivity", action="store_true", help="key-pair energies only; every step weight 1")
    ap.add_argument("--model-id", default=None, help="model id the store keys the profile by (default: the GGUF's name)")
    a = ap.parse_args(argv)

    m = kvmodel.load_model()
    toks = m.tokenize(Path(a.text).read_text())
    need = a.tokens + (0 if a.no_sensitivity else a.continuation)
    if len(toks) < min(need, 64 + a.continuation):
        sys.exit(f"error: {a.text} has only {len(toks)} tokens; calibration needs {need}")
    ctx = toks[: a.tokens]
    energy = quarter_octaves(keych.pair_energy(m, ctx))
    L = m.n_layers
    if a.no_sensitivity:
        weights = np.ones((L, 2))
        how = "step weights not measured (1)"
    else:
        cont = toks[a.tokens: a.tokens + a.continuation]
        weights, _ = sensitivity_weights(m, ctx, cont, a.alpha, log=lambda s: print(s, file=sys.stderr, flush=True))
        how = (f"step weights sqrt(median KL / KL) of one group quantised at alpha {a.alpha} "
               f"({len(cont)}-token continuation), clipped to 0.4...2.5")
    model_id = a.model_id or kvmodel.MODEL_NAME
    prof = {
        "format": FORMAT, "version": VERSION, "model": model_id, "calibrated": True,
        "source": f"tools/calibrate.py on {Path(a.text).name} ({len(ctx)} tokens): key-pair query energy; {how}",
        "shape": {"layers": L, "kv_heads": m.n_kv_heads, "head_dim": m.head_dim},
        "rope": rope_entry(m),
        "group_step_weights": [[float(w) for w in row] for row in weights],
        "key_pair_energy": [[int(v) for v in row] for row in energy],
    }
    Path(a.output).write_text(profile_json(prof))
    print(f"{a.output}: {model_id}, {L} layers x {m.n_kv_heads} KV heads x {m.head_dim}")


if __name__ == "__main__":
    main()
