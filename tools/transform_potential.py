#!/usr/bin/env python3
"""Measured potential of a per-model transform in front of the lossy codec (not a codec feature):
keys with RoPE undone at their absolute positions and weighted by the profile's query energy, then
keys and values rotated into a per-(layer, KV head) KLT basis learned from another text's KV. The
project's codec encodes the transformed KV unchanged (RoPE off, uniform key channels), the inverse
transform restores it, and llama.cpp's float oracle scores it against the shipped path on the
calibration windows (`calibrate_llama.Windows`): size, top-1, ppl ratio, KL, and the size the
transform reaches at the shipped path's KL (log-log between its two trials).

    PYTHONPATH=$LLAMA_HOME/llama_cpp_python-0.3.36:python LLAMA_CPP_LIB_PATH=$LLAMA_HOME/build/bin \\
    tools/transform_potential.py --model smollm2 --profile profiles/SmolLM2-135M-Instruct-Q4_1.json \\
        --basis basis.safetensors [--levels 1,2,3,4] [--basis-kind klt|none]

BASIS: `tools/llama_kv.py` of a text (1,024 tokens). --basis-kind none keeps the identity (RoPE undo
and weighting only). Why a transform and what it would take: schemas/codec-design.md, next steps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tools"))
import kvstore  # noqa: E402
from bench_llama_quality import compare, float_gguf, model_gguf  # noqa: E402
from calibrate_llama import Windows  # noqa: E402
from kvstore.llama_engine import Engine  # noqa: E402
from profile_io import profile_json  # noqa: E402

GAMMA = 0.75  # the codec's key-channel exponent: step_i ~ w_i^(-gamma/2)
FACTORS = (1.0, 1.3)  # the transform's two trials per level, as multiples of the shipped level scale


class Transform:
    """Absolute-position RoPE undo (per layer: the profile's, or Gemma 3's local/global bases),
    query-energy weighting of keys, and a KLT basis per (layer, kind, head)."""

    def __init__(self, prof: dict, model, basis_kv: np.ndarray | None):
        L, H, D = model.layers, model.kv_heads, model.head_dim
        self.L, self.D = L, D
        if prof.get("rope"):
            r = prof["rope"]
            self.inv = [r["theta"] ** (-np.arange(0, D, 2) / D)] * L
            self.half = r["pairs"] == "half"
        elif any(model.sliding_layers):  # Gemma 3: local layers base 1e4, global 1e6, NEOX pairs
            self.inv = [(1e4 if s else 1e6) ** (-np.arange(0, D, 2) / D) for s in model.sliding_layers]
            self.half = True
        else:
            self.inv = None
        energy = np.array(prof["key_pair_energy"], float)  # quarter octaves, channel c reads pair c // 2
        self.wk = (2.0 ** (np.repeat(energy, 2, axis=1) / 4)).reshape(L, H, D) ** (GAMMA / 2)
        self.U = np.broadcast_to(np.eye(D), (L, 2, H, D, D)).copy()
        if basis_kv is not None:
            for l in range(L):
                for kind in range(2):
                    x = self.keys_in(basis_kv[l, 0], l) if kind == 0 else basis_kv[l, 1]
                    for h in range(H):
                        y = x[:, h] - x[:, h].mean(axis=0)
                        self.U[l, kind, h] = np.linalg.eigh(y.T @ y)[1]

    def rope(self, k: np.ndarray, layer: int, sign: int) -> np.ndarray:
        if self.inv is None:
            return k
        ang = sign * np.arange(k.shape[0])[:, None] * self.inv[layer][None, :]
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        h = self.D // 2
        x, y = (k[..., :h], k[..., h:]) if self.half else (k[..., 0::2], k[..., 1::2])
        out = np.empty_like(k)
        a, b = (slice(0, h), slice(h, None)) if self.half else (slice(0, None, 2), slice(1, None, 2))
        out[..., a], out[..., b] = x * c - y * s, x * s + y * c
        return out

    def keys_in(self, k: np.ndarray, layer: int) -> np.ndarray:
        return self.rope(k.astype(np.float64), layer, -1) * self.wk[layer][None]

    def forward(self, kv: np.ndarray) -> np.ndarray:
        out = np.empty(kv.shape, np.float32)
        for l in range(self.L):
            out[l, 0] = np.einsum("thd,hde->the", self.keys_in(kv[l, 0], l), self.U[l, 0])
            out[l, 1] = np.einsum("thd,hde->the", kv[l, 1].astype(np.float64), self.U[l, 1])
        return out

    def inverse(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape, np.float32)
        for l in range(self.L):
            z = np.einsum("the,hde->thd", x[l, 0].astype(np.float64), self.U[l, 0]) / self.wk[l][None]
            out[l, 0] = self.rope(z, l, 1)
            out[l, 1] = np.einsum("the,hde->thd", x[l, 1].astype(np.float64), self.U[l, 1])
        return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--profile", required=True)
    ap.add_argument("--basis", required=True, help="KV the basis is learned from (tools/llama_kv.py)")
    ap.add_argument("--basis-kind", choices=("klt", "none"), default="klt")
    ap.add_argument("--levels", default="1,2,3,4")
    ap.add_argument("--text", action="append", help="window texts (default: the calibration texts)")
    a = ap.parse_args(argv)

    prof = json.loads(Path(a.profile).read_text())
    run = float_gguf(model_gguf(a.model))
    model = kvstore.llama.gguf_model(run)
    engine = Engine(run, 1024 + 128 + 64, 1, flash_attn=0, kv_type="f32")
    names = a.text or ["northanger_abbey_ch1-2.txt", "python_reference_execmodel.txt"]
    texts = {n: engine.tokenize((ROOT / "tools/texts" / n).read_text(), bos=True) for n in names}
    win = Windows(engine, model, texts, 6, 1024, 128)
    basis = kvstore.read_safetensors(a.basis).kv.astype(np.float64) if a.basis_kind == "klt" else None
    tf = Transform(prof, model, basis)
    flat = dict(prof, rope=None, key_pair_energy=[[0] * len(row) for row in prof["key_pair_energy"]])

    def score(level: int, factor: float, transformed: bool) -> dict:
        p = dict(flat if transformed else prof)
        p["level_step_scales"] = [float(s) * (factor if i == level - 1 else 1) for i, s in enumerate(p["level_step_scales"])]
        return win.score(level, profile_json(p).encode(), tf if transformed else None)

    for level in map(int, a.levels.split(",")):
        t0 = time.time()
        base = score(level, 1.0, False)
        trials = [score(level, f, True) for f in FACTORS]
        (s0, k0), (s1, k1) = [(np.log(t["compression"]), np.log(t["kl"])) for t in trials]
        at_kl = np.exp(s0 + (np.log(base["kl"]) - k0) * (s1 - s0) / (k1 - k0))
        fmt = lambda t: f"{t['compression']:.2f}x top-1 {t['top1']:.4f} ppl {t['ppl_ratio']:.4f} KL {t['kl']:.2e}"  # noqa: E731
        print(f"L{level} shipped {fmt(base)} | transform {' ; '.join(fmt(t) for t in trials)} | "
              f"at the shipped KL {at_kl:.2f}x ({at_kl / base['compression'] - 1:+.0%}) ({time.time() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
