"""What can a context-modelled lossless codec reach on real F16 KV? (study for level 0)

Every figure is an honest adaptive code length for one 256-token chunk: models learn as they
code (no shipped tables), so the cost of learning is included.
- Count models: bitwise KT (Krichevsky-Trofimov) estimators, each bit of a field coded MSB-first
  under (context, higher bits). A KT code length depends only on the final counts, so it is
  computed in closed form (Dirichlet-multinomial) instead of by a loop.
- Gaussian models: per-channel running mean/variance from the chunk's earlier tokens (shrunk
  to the layer's pooled variance), each fp16 value charged -log2 of its bin's probability,
  with a 2^-14 escape to a flat 16-bit code. Keys optionally un-rotated (RoPE, adjacent pairs,
  theta 1e5) before the statistics are taken, the prediction rotated back to position t.
- Oracle rows fit the per-channel Gaussian on the whole chunk (free parameters): a bound, not
  a codec.

Usage: python tools/lossless_bound_study.py [DIR with *_1024.safetensors] (default /work/data/bench)
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.special import gammaln, ndtr

sys.path.insert(0, str(Path(__file__).parent))
import st_io  # noqa: E402

TEXTS = ["emma_ch1", "persuasion_ch1", "mansfield_park_ch1-2"]
THETA = 100000.0


def kt_cost(ctx, sym, k, alpha=0.5):
    """Adaptive Dirichlet(alpha) code length in bits of sym under ctx (order-independent)."""
    key = ctx.ravel() * k + sym.ravel()
    _, cnt = np.unique(key, return_counts=True)
    _, ccnt = np.unique(ctx.ravel(), return_counts=True)
    nats = (gammaln(ccnt + k * alpha) - gammaln(k * alpha)).sum() - (gammaln(cnt + alpha) - gammaln(alpha)).sum()
    return nats / np.log(2)


def bitwise_cost(ctx, val, nbits, depth=None):
    """val coded MSB-first, each bit binary KT under (ctx, up to `depth` higher bits)."""
    total = 0.0
    for j in range(nbits):
        sh = nbits - 1 - j
        d = j if depth is None else min(j, depth)
        prefix = (val >> (sh + 1)) & ((1 << d) - 1)
        c = (((ctx << (d + 1)) | (1 << d) | prefix) << 4) | j
        total += kt_cost(c, (val >> sh) & 1, 2)
    return total


def count_models(u):
    """u: uint16 chunk [L, 2, T, H, D] -> {scheme: bits/value}."""
    u = u.astype(np.int64)
    L, KV, T, H, D = u.shape
    n = u.size
    ones = np.ones((1, 1, T, 1, 1), np.int64)
    chan = np.arange(L * KV * H * D).reshape(L, KV, 1, H, D) * ones
    lk = np.broadcast_to(np.arange(L * KV).reshape(L, KV, 1, 1, 1), u.shape)
    hi, lo = u >> 8, u & 255
    se, ex, man = u >> 10, (u >> 10) & 31, u & 1023
    prev = np.roll(u, 1, axis=2)
    prev[:, :, 0] = 0
    pse = prev >> 10
    mant = bitwise_cost(ex, man, 10, depth=3)
    return {
        "bytes: high|channel, low|channel": (bitwise_cost(chan, hi, 8) + bitwise_cost(chan, lo, 8)) / n,
        "bytes: high|channel, low|global": (bitwise_cost(chan, hi, 8) + bitwise_cost(0 * chan, lo, 8)) / n,
        "sign+exp|channel; mantissa|exp": (bitwise_cost(chan, se, 6) + mant) / n,
        "sign+exp|channel,prev s+e; mantissa|exp": (bitwise_cost(chan * 64 + pse, se, 6) + mant) / n,
        "sign+exp|layer,K/V,prev s+e; mantissa|exp": (bitwise_cost(lk * 64 + pse, se, 6) + mant) / n,
        "sign+exp|layer,K/V,prev s+e,RoPE partner s+e; mantissa|exp":
            (bitwise_cost((lk * 64 + pse) * 64 + (u[..., np.arange(D) ^ 1] >> 10), se, 6) + mant) / n,
    }


def bin_bits(x, mean, sd, step, eps=2.0 ** -14):
    p = ndtr((x + step / 2 - mean) / sd) - ndtr((x - step / 2 - mean) / sd)
    return -np.log2((1 - eps) * p + eps * 2.0 ** -16)


def rotate(a, b, ang, sign):
    """Rotates adjacent pairs (a, b) by sign * ang."""
    c, s = np.cos(ang), sign * np.sin(ang)
    return a * c - b * s, b * c + a * s


def gaussian_models(u, k0=2.0):
    """Causal per-channel Gaussian (K rotated / un-rotated, + AR(1)) and the in-sample oracle."""
    x = u.view(np.float16).astype(np.float64)
    ex = (u.astype(np.int64) >> 10) & 31
    step = np.where(ex == 0, 2.0 ** -24, 2.0 ** (ex - 25))
    T = x.shape[2]
    w = THETA ** (-np.arange(32) * 2 / 64)
    angles = np.arange(T)[:, None] * w  # [T, 32]
    out = {}
    for unrot, ar in ((False, False), (True, False), (True, True)):
        bits = []
        for kv in (0, 1):
            X, S = x[:, kv], step[:, kv]
            rot = unrot and kv == 0
            Xu = X.copy()
            if rot:
                Xu[..., 0::2], Xu[..., 1::2] = rotate(X[..., 0::2], X[..., 1::2], angles[None, :, None, :], -1)
            shape = X[:, 0].shape
            s1, s2 = np.zeros(shape), np.zeros(shape)
            sxy, sp, sp2, sy = (np.zeros(shape) for _ in range(4))
            total = 16.0 * X[:, 0].size  # token 0: nothing learnt yet
            for t in range(1, T):
                s1 += Xu[:, t - 1]
                s2 += Xu[:, t - 1] ** 2
                mu = s1 / t
                var = np.maximum(s2 / t - mu * mu, 0)
                pool = var.mean(axis=(1, 2), keepdims=True) + 1e-12
                var = (var * t + k0 * pool) / (t + k0)
                pred = mu.copy()
                if ar and t >= 3:
                    m = t - 2
                    mp, my = sp / m, sy / m
                    rho = np.clip((sxy / m - mp * my) / np.maximum(sp2 / m - mp * mp, 1e-12) * m / (m + 4), -.95, .95)
                    pred = mu + rho * (Xu[:, t - 1] - mu)
                    var = var * (1 - rho * rho)
                if rot:
                    a, b = rotate(pred[..., 0::2], pred[..., 1::2], angles[t], 1)
                    pred[..., 0::2], pred[..., 1::2] = a, b
                    c2, s2_ = np.cos(angles[t]) ** 2, np.sin(angles[t]) ** 2
                    va, vb = var[..., 0::2].copy(), var[..., 1::2].copy()
                    var[..., 0::2], var[..., 1::2] = c2 * va + s2_ * vb, s2_ * va + c2 * vb
                total += bin_bits(X[:, t], pred, np.sqrt(np.maximum(var, 1e-14)), S[:, t]).sum()
                if t >= 2:
                    prev, cur = Xu[:, t - 1], Xu[:, t]
                    sxy += prev * cur; sp += prev; sp2 += prev * prev; sy += cur
            bits.append(total / X.size)
        name = "Gaussian causal, " + ("K un-rotated" if unrot else "rotated (as stored)") + (" + AR(1)" if ar else "")
        out[name] = float(np.mean(bits))
    # Oracle: whole-chunk per-channel (per-pair for un-rotated K) Gaussian, parameters free.
    K, V = x[:, 0], x[:, 1]
    a, b = rotate(K[..., 0::2], K[..., 1::2], angles[None, :, None, :], -1)
    da, db = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    saa, sbb, sab = (da * da).mean(1, keepdims=True), (db * db).mean(1, keepdims=True), (da * db).mean(1, keepdims=True)
    ang = angles[None, :, None, :]
    c, s = np.cos(ang), np.sin(ang)
    pa, pb = rotate(a.mean(1, keepdims=True), b.mean(1, keepdims=True), ang, 1)
    caa = c * c * saa - 2 * c * s * sab + s * s * sbb
    cbb = s * s * saa + 2 * c * s * sab + c * c * sbb
    cab = c * s * saa + (c * c - s * s) * sab - c * s * sbb
    ka, kb = K[..., 0::2], K[..., 1::2]
    kbits = (bin_bits(ka, pa, np.sqrt(caa), step[:, 0, ..., 0::2]).mean()
             + bin_bits(kb, pb + cab / caa * (ka - pa), np.sqrt(np.maximum(cbb - cab ** 2 / caa, 1e-14)),
                        step[:, 0, ..., 1::2]).mean()) / 2
    vbits = bin_bits(V, V.mean(1, keepdims=True), V.std(1, keepdims=True), step[:, 1]).mean()
    rbits = bin_bits(x, x.mean(2, keepdims=True), x.std(2, keepdims=True), step).mean()
    out["oracle Gaussian per channel, rotated (bound)"] = float(rbits)
    out["oracle Gaussian, K un-rotated per pair (bound)"] = float((kbits + vbits) / 2)
    return out


def main():
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("/work/data/bench")
    table = {}
    for text in TEXTS:
        kv = st_io.load(root / f"{text}_1024.safetensors")[0]["kv"].view(np.uint16)
        for c in range(kv.shape[2] // 256):
            chunk = np.ascontiguousarray(kv[:, :, c * 256:(c + 1) * 256])
            for k, v in {**count_models(chunk), **gaussian_models(chunk)}.items():
                table.setdefault(k, {}).setdefault(text, []).append(v)
        print(f"# {text} done", file=sys.stderr, flush=True)
    print(f"| scheme | {' | '.join(TEXTS)} | mean bits/value | ratio vs fp16 |")
    print("| --- |" + " --- |" * (len(TEXTS) + 2))
    for k, per in table.items():
        row = [float(np.mean(per[t])) for t in TEXTS]
        m = float(np.mean(row))
        print(f"| {k} | {' | '.join(f'{r:.3f}' for r in row)} | {m:.3f} | {16 / m:.3f}x |")


if __name__ == "__main__":
    main()
