#!/usr/bin/env python3
"""Calibrate the lossy codec for any model llama.cpp runs: writes a codec profile file
(schemas/codec-profile.md) measured through the engine itself, so no model's numbers live in code.

    PYTHONPATH=$LLAMA_HOME/llama_cpp_python-0.3.36:python LLAMA_CPP_LIB_PATH=$LLAMA_HOME/build/bin \\
    tools/calibrate_llama.py --model gemma3|smollm2|GGUF -o profiles/MODEL.json [--oracle float|engine]
                             [--text FILE] [--windows 2] [--tokens 1024] [--continuation 128]

The oracle is llama.cpp on the model dequantized to F32 with an F32 KV cache (default; its logits
move only with the KV), or the engine as users run it. On calibration windows of a text used for
no evaluation (default northanger_abbey_ch1-2; the quality benches hold out every other text):

 1. the base: `kvstore calibrate` of the exact KV (shape, key-pair energy from the keys, RoPE);
 2. group step weights (per layer, K and V): the exact KV with only that group replaced by its
    level-2 encoding (the real codec, base profile), KL of the continuation against the exact KV;
    weight = sqrt(median KL / KL), clipped to 1/32...8 (step^2 ~ distortion, as tools/calibrate.py;
    a wide range: Gemma 3's full-attention layers' keys are 100-300x as sensitive as the median);
 3. level step scales: per level, the largest scale (bisection on a log scale, 1/64...4) whose mean
    top-1 agreement and perplexity ratio over the windows keep the level's floor with a margin:
    top-1 >= floor + 0.3 (1 - floor), ppl ratio <= 1 + 0.7 (ppl floor - 1).
The model's profile key is the model id the store files its KV under (the GGUF's, as the sidecar
and kvstore.llama use), unless --model-id says otherwise.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tools"))
import kvstore  # noqa: E402
from bench_llama_quality import CHUNK_TOKENS, compare, float_gguf, model_gguf  # noqa: E402
from kvstore.llama_engine import Engine  # noqa: E402
from profile_io import profile_json  # noqa: E402

# The promises (schemas/codec-design.md): top-1 agreement at least, perplexity ratio at most.
FLOORS = {1: (0.99, 1.005), 2: (0.97, 1.01), 3: (0.93, 1.03), 4: (0.85, 1.08)}
SCALE_RANGE = (1 / 64, 4.0)
WEIGHT_RANGE = (1 / 32, 8.0)


class Windows:
    """Calibration windows: the exact KV of each context and the logits of its continuation."""

    def __init__(self, engine: Engine, model, ids: list[int], windows: int, tokens: int, continuation: int):
        self.engine, self.model, self.items = engine, model, []
        span = tokens + continuation
        if len(ids) < windows * span:
            sys.exit(f"error: the text has {len(ids)} tokens; {windows} windows need {windows * span}")
        for w in range(windows):
            part = ids[w * span:(w + 1) * span]
            ctx, cont = part[:tokens], part[tokens:]
            exact, layout, _ = engine.prefill_kv(ctx, model)
            self.items.append({"ctx": ctx, "cont": cont, "exact": exact, "layout": layout})
            self.items[-1]["ref"] = self.logits(self.items[-1], exact)

    def logits(self, item: dict, kv: np.ndarray) -> np.ndarray:
        self.engine.clear()
        self.engine.restore(kvstore.llama.kv_to_state(kv, item["layout"]))
        return self.engine.prefill(item["cont"], len(item["ctx"]), all_logits=True)

    def decoded(self, item: dict, level: int, profile: bytes) -> np.ndarray:
        blob = kvstore.encode_file(item["exact"], item["ctx"], level=level, model=self.model.identity,
                                   chunk_tokens=CHUNK_TOKENS, profile=profile)
        return kvstore.decode_file(blob).kv, item["exact"].size * 2 / len(blob)

    def score(self, level: int, profile: bytes) -> dict:
        """Mean top-1 / KL / ppl ratio and size vs fp16 over the windows."""
        rows, sizes = [], []
        for item in self.items:
            kv, size = self.decoded(item, level, profile)
            rows.append(compare(item["ref"], self.logits(item, kv), item["cont"]))
            sizes.append(size)
        out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        out["compression"] = float(np.mean(sizes))
        return out


# llama.cpp's rope types: NORM rotates adjacent pairs (2i, 2i+1) (Llama family, after the GGUF
# converter's Q/K permutation), NEOX pairs (i, i + d/2) (most others).
ADJACENT_ROPE = {"llama", "mistral", "granite", "deci", "baichuan", "internlm2"}


def rope_entry(gguf: str, model) -> dict | None:
    """The keys' RoPE for the profile, from the GGUF: None when layers differ (sliding-window models
    use another base on their local layers) or when the GGUF does not say."""
    import gguf as ggufpy
    if model.sliding_layers:
        return None
    fields = ggufpy.GGUFReader(gguf).fields
    base = fields.get(f"{model.architecture}.rope.freq_base")
    if base is None:
        return None
    dim = fields.get(f"{model.architecture}.rope.dimension_count")
    return {"theta": float(base.contents()), "pairs": "adjacent" if model.architecture in ADJACENT_ROPE else "half",
            "dim": int(dim.contents()) if dim is not None else model.head_dim}


def base_profile(kv: np.ndarray, tokens: list[int], model_id: str) -> dict:
    """`kvstore calibrate` of one context: the KV-derived default this calibration refines."""
    binary = ROOT / ".build" / "debug" / "kvstore"
    for b in (ROOT / ".build" / "release" / "kvstore", binary):
        if b.exists():
            binary = b
            break
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp) / "ctx.safetensors"
        ctx.write_bytes(kvstore.safetensors_bytes(kv, tokens, model=model_id))
        out = Path(tmp) / "base.json"
        subprocess.run([str(binary), "calibrate", str(ctx), "-o", str(out), "--model", model_id], check=True,
                       capture_output=True)
        return json.loads(out.read_text())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2, gemma3 or a GGUF path")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--oracle", choices=("float", "engine"), default="float")
    ap.add_argument("--text", default=str(ROOT / "tools/texts/northanger_abbey_ch1-2.txt"))
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--continuation", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6, help="bisection steps per level")
    ap.add_argument("--model-id", help="profile key (default: the quantized GGUF's kvstore model id)")
    ap.add_argument("--uniform", action="store_true",
                    help="keep the default's uniform step weights, tune only the level scales: how fine the "
                         "uncalibrated default must step for this model (the result stays marked uncalibrated)")
    a = ap.parse_args(argv)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.time()

    gguf = model_gguf(a.model)
    model_id = a.model_id or kvstore.llama.gguf_model(gguf).identity
    run = float_gguf(gguf) if a.oracle == "float" else gguf
    model = kvstore.llama.gguf_model(run)
    engine = Engine(run, a.tokens + a.continuation + 64, a.threads, flash_attn=0,
                    kv_type="f32" if a.oracle == "float" else "f16")
    ids = engine.tokenize(Path(a.text).read_text(), bos=True)
    win = Windows(engine, model, ids, a.windows, a.tokens, a.continuation)
    log(f"[calibrate] {model_id} ({a.oracle} oracle): {a.windows} windows of {a.tokens}+{a.continuation} tokens "
        f"of {Path(a.text).name} ({time.time() - t0:.0f} s)")

    prof = base_profile(win.items[0]["exact"], win.items[0]["ctx"], model_id)
    prof["rope"] = rope_entry(gguf, model)
    L = model.layers

    # 2. Sensitivity of each group to its own level-2 encoding.
    kl = np.zeros((L, 2))
    coded = [] if a.uniform else [win.decoded(item, 2, profile_json(prof).encode())[0] for item in win.items]
    for layer in range(0 if a.uniform else L):
        for kind in range(2):
            vals = []
            for item, dec in zip(win.items, coded):
                probe = item["exact"].copy()
                probe[layer, kind] = dec[layer, kind]
                vals.append(compare(item["ref"], win.logits(item, probe), item["cont"])["kl"])
            kl[layer, kind] = max(float(np.mean(vals)), 1e-12)
        log(f"[calibrate] layer {layer + 1}/{L}: KL keys {kl[layer, 0]:.2e} values {kl[layer, 1]:.2e} "
            f"({time.time() - t0:.0f} s)")
    if not a.uniform:
        weights = np.round(np.clip(np.sqrt(np.median(kl) / kl), WEIGHT_RANGE[0], WEIGHT_RANGE[1]), 3)
        prof["group_step_weights"] = [[float(w) for w in row] for row in weights]

    # 3. Per level, the largest step scale that keeps the floor with a margin on these windows.
    scales, reached = [], {}
    for level in (1, 2, 3, 4):
        top1_floor, ppl_floor = FLOORS[level]
        want_top1 = top1_floor + 0.3 * (1 - top1_floor)
        want_ppl = 1 + 0.7 * (ppl_floor - 1)

        def ok(scale: float) -> tuple[bool, dict]:
            trial = dict(prof, level_step_scales=[scale if i == level - 1 else 1.0 for i in range(4)])
            s = win.score(level, profile_json(trial).encode())
            good = s["top1"] >= want_top1 and s["ppl_ratio"] <= want_ppl
            log(f"[calibrate] L{level} scale {scale:.3f}: top-1 {s['top1']:.4f} ppl {s['ppl_ratio']:.4f} "
                f"KL {s['kl']:.2e} {s['compression']:.2f}x -> {'keeps' if good else 'misses'} the floor "
                f"({time.time() - t0:.0f} s)")
            return good, s

        lo, hi = np.log(SCALE_RANGE[0]), np.log(SCALE_RANGE[1])
        best = None
        for _ in range(a.steps):
            mid = (lo + hi) / 2
            good, s = ok(float(np.exp(mid)))
            if good:
                lo, best = mid, (float(np.exp(mid)), s)
            else:
                hi = mid
        if best is None:
            good, s = ok(SCALE_RANGE[0])
            best = (SCALE_RANGE[0], s)
        scale = float(np.round(best[0], 4))
        scales.append(scale)
        reached[level] = best[1]
    prof["level_step_scales"] = scales
    prof["calibrated"] = not a.uniform
    prof["model"] = model_id
    prof["source"] = (f"tools/calibrate_llama.py, {a.oracle} oracle, {a.windows} windows of {a.tokens}+{a.continuation} "
                      f"tokens of {Path(a.text).name}: key-pair energy from the keys (kvstore calibrate); step weights "
                      f"sqrt(median KL / KL) of one group at its level-2 encoding, clipped to 1/32...8; level scales by bisection to keep "
                      f"each floor with a margin")
    Path(a.output).write_text(profile_json(prof))
    for level, s in reached.items():
        log(f"[calibrate] L{level}: scale {scales[level - 1]}, top-1 {s['top1']:.4f} ppl {s['ppl_ratio']:.4f} "
            f"KL {s['kl']:.2e} at {s['compression']:.2f}x")
    print(f"{a.output}: {model_id}, {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
