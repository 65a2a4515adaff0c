#!/usr/bin/env python3
"""Calibrate the lossy codec for any model llama.cpp runs: writes a codec profile file
(schemas/codec-profile.md) measured through the engine itself, so no model's numbers live in code.

    PYTHONPATH=$LLAMA_HOME/llama_cpp_python-0.3.36:python LLAMA_CPP_LIB_PATH=$LLAMA_HOME/build/bin \\
    tools/calibrate_llama.py --model gemma3|smollm2|GGUF -o profiles/MODEL.json [--oracle float|engine]
                             [--text FILE ...] [--windows 6] [--tokens 1024] [--continuation 128]
                             [--weights-from PROFILE] [--margin 0.25]

The oracle is llama.cpp on the model dequantized to F32 with an F32 KV cache (default; its logits
move only with the KV), or the engine as users run it. On calibration windows of texts used for
no evaluation (default northanger_abbey_ch1-2; the quality benches hold out every text but these and
python_reference_execmodel, a second domain to calibrate on; repeated --text windows take turns):

 1. the base: `kvstore calibrate` of the exact KV (shape, RoPE), with the key channels' weights
    from the energy of the queries that read them (llama.cpp's graph, tensors Qcur-<layer> after
    RoPE, watched while the windows' contexts prefill; --key-energy keys keeps the default's guess
    from the keys);
 2. group step weights (per layer, K and V): the exact KV with only that group replaced by its
    level-2 encoding (the real codec, base profile), KL of the continuation against the exact KV;
    weight = sqrt(median KL / KL), clipped to 1/32...8 (step^2 ~ distortion;
    a wide range: Gemma 3's full-attention layers' keys are 100-300x as sensitive as the median);
 3. level step scales, aiming at each floor's error times (1 - margin), margin 0.25: top-1 >=
    1 - 0.75 (1 - floor), ppl ratio <= 1 + 0.75 (ppl floor - 1). Top-1 over a few hundred tokens
    is too coarse to bisect on (one token is 1/n), so trials that bracket each level's target
    feed two fits: per level log KL against log scale, and pooled over the levels log(1 - top-1)
    and log(ppl ratio - 1) against log KL. Each level takes the scale whose fitted KL meets the
    tighter target; a trial at that scale that misses the floor by more than its noise (two standard
    deviations of a top-1 rate over the windows' tokens) steps it down.
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
from kvstore.llama_engine import Engine, QueryEnergy  # noqa: E402
from level_fit import SCALE_RANGE, error_fits, keeps_floor, kl_for, scale_for_kl, window_starts  # noqa: E402
from profile_io import profile_json, quarter_octaves  # noqa: E402

# The promises (schemas/codec-design.md): top-1 agreement at least, perplexity ratio at most.
FLOORS = {1: (0.99, 1.005), 2: (0.97, 1.01), 3: (0.93, 1.03), 4: (0.85, 1.08)}
WEIGHT_RANGE = (1 / 32, 8.0)


class Windows:
    """Calibration windows: the exact KV of each context and the logits of its continuation."""

    def __init__(self, engine: Engine, model, texts: dict[str, list[int]], windows: int, tokens: int,
                 continuation: int):
        self.engine, self.model, self.items = engine, model, []
        span = tokens + continuation
        try:
            starts = window_starts({name: len(ids) for name, ids in texts.items()}, windows, span)
        except ValueError as e:
            sys.exit(f"error: {e}")
        for name, start in starts:
            part = texts[name][start:start + span]
            ctx, cont = part[:tokens], part[tokens:]
            exact, layout, _ = engine.prefill_kv(ctx, model)
            self.items.append({"ctx": ctx, "cont": cont, "exact": exact, "layout": layout})
            self.items[-1]["ref"] = self.logits(self.items[-1], exact)

    def logits(self, item: dict, kv: np.ndarray, n: int | None = None) -> np.ndarray:
        """Teacher-forced logits of the first n tokens of the continuation (all: None)."""
        self.engine.clear()
        self.engine.restore(kvstore.llama.kv_to_state(kv, item["layout"]))
        return self.engine.prefill(item["cont"][:n], len(item["ctx"]), all_logits=True)

    def kl(self, item: dict, kv: np.ndarray, n: int) -> float:
        """KL of the first n continuation tokens against the exact KV's."""
        return compare(item["ref"][:n], self.logits(item, kv, n), item["cont"][:n])["kl"]

    def decoded(self, item: dict, level: int, profile: bytes, transform=None) -> np.ndarray:
        """The window's KV through the codec; `transform` (forward / inverse, tools/transform_potential.py)
        wraps the codec when given."""
        kv = transform.forward(item["exact"]) if transform else item["exact"]
        blob = kvstore.encode_file(kv, item["ctx"], level=level, model=self.model.identity,
                                   chunk_tokens=CHUNK_TOKENS, profile=profile)
        out = kvstore.decode_file(blob).kv
        return (transform.inverse(out) if transform else out), item["exact"].size * 2 / len(blob)

    def score(self, level: int, profile: bytes, transform=None) -> dict:
        """Mean top-1 / KL / ppl ratio and size vs fp16 over the windows."""
        rows, sizes = [], []
        for item in self.items:
            kv, size = self.decoded(item, level, profile, transform)
            rows.append(compare(item["ref"], self.logits(item, kv), item["cont"]))
            sizes.append(size)
        out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        out["compression"] = float(np.mean(sizes))
        return out


# llama.cpp's rope types: NORM rotates adjacent pairs (2i, 2i+1) (Llama family, after the GGUF
# converter's Q/K permutation), NEOX pairs (i, i + d/2) (most others).
ADJACENT_ROPE = {"llama", "mistral", "granite", "deci", "baichuan", "internlm2"}


def rope_entry(gguf: str, model) -> dict | None:
    """The keys' RoPE for the profile, from the GGUF (None when it does not say). Sliding-window
    layers use their own base (`rope.freq_base_swa`, llama.cpp's default 10000 when the GGUF has
    none): the profile then states a theta per layer."""
    import gguf as ggufpy
    fields = ggufpy.GGUFReader(gguf).fields
    base = fields.get(f"{model.architecture}.rope.freq_base")
    if base is None:
        return None
    dim = fields.get(f"{model.architecture}.rope.dimension_count")
    entry = {"theta": float(base.contents()), "pairs": "adjacent" if model.architecture in ADJACENT_ROPE else "half",
             "dim": int(dim.contents()) if dim is not None else model.head_dim}
    if any(model.sliding_layers):
        swa = fields.get(f"{model.architecture}.rope.freq_base_swa")
        local = float(swa.contents()) if swa is not None else 10000.0
        entry["layer_theta"] = [local if s else entry["theta"] for s in model.sliding_layers]
    return entry


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


def load_weights(path: str, layers: int) -> list:
    """group_step_weights of an earlier calibration of the same model (re-tuning only the scales)."""
    w = json.loads(Path(path).read_text())["group_step_weights"]
    if len(w) != layers:
        sys.exit(f"error: {path} has step weights for {len(w)} layers, the model {layers}")
    return w


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2", help="smollm2, gemma3 or a GGUF path")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--oracle", choices=("float", "engine"), default="float")
    ap.add_argument("--text", action="append",
                    help="calibration text (repeat for several; the windows take turns over them; "
                         "default northanger_abbey_ch1-2.txt)")
    ap.add_argument("--windows", type=int, default=6)
    ap.add_argument("--tokens", type=int, default=1024)
    # The promise is judged on the first 128 tokens after the context (bench_llama_quality.py): the
    # KV's error weighs most on them (later tokens also attend to their own exact KV), so 256 tokens
    # measured 1.1x to 1.55x less KL (Gemma 3, levels 1-4, the same two windows) and under-stepped.
    ap.add_argument("--continuation", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--sensitivity-windows", type=int, default=2, help="windows the group sensitivities use")
    ap.add_argument("--sensitivity-tokens", type=int, default=128, help="continuation tokens they use")
    ap.add_argument("--margin", type=float, default=0.25,
                    help="each level aims at its floor's error times (1 - margin): top-1 >= 1 - (1 - floor)(1 - m)")
    ap.add_argument("--start-scale", type=float, default=0.5)
    ap.add_argument("--key-energy", choices=("queries", "keys"), default="queries",
                    help="key channels stepped by the energy of the queries that read them (measured in the "
                         "engine's graph) or of the keys themselves (the uncalibrated default's guess; "
                         "always with --uniform)")
    ap.add_argument("--weights-from", help="take the step weights of this profile (an earlier calibration of the "
                                           "model) and tune only the level scales")
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
    queries = QueryEnergy()
    engine = Engine(run, a.tokens + a.continuation + 64, a.threads, flash_attn=0,
                    kv_type="f32" if a.oracle == "float" else "f16", queries=queries)
    texts = {Path(t).name: engine.tokenize(Path(t).read_text(), bos=True)
             for t in a.text or [ROOT / "tools/texts/northanger_abbey_ch1-2.txt"]}
    queries.on = True  # the windows' prefill (contexts and the continuations' reference logits)
    win = Windows(engine, model, texts, a.windows, a.tokens, a.continuation)
    queries.on = False
    log(f"[calibrate] {model_id} ({a.oracle} oracle): {a.windows} windows of {a.tokens}+{a.continuation} tokens "
        f"of {', '.join(texts)} ({time.time() - t0:.0f} s)")

    prof = base_profile(win.items[0]["exact"], win.items[0]["ctx"], model_id)
    prof["rope"] = rope_entry(gguf, model)
    if a.key_energy == "queries" and not a.uniform:  # --uniform measures the default, whose guess is from the keys
        prof["key_pair_energy"] = [[int(v) for v in row] for row in quarter_octaves(queries.pair_energy(model.kv_heads))]
    L = model.layers

    # 2. Sensitivity of each group to its own level-2 encoding (KL is smooth: the first windows and
    # continuation tokens suffice).
    if a.weights_from:
        prof["group_step_weights"] = load_weights(a.weights_from, L)
        log(f"[calibrate] step weights from {a.weights_from}")
    elif not a.uniform:
        items = win.items[:a.sensitivity_windows]
        coded = [win.decoded(item, 2, profile_json(prof).encode())[0] for item in items]
        kl = np.zeros((L, 2))
        for layer in range(L):
            for kind in range(2):
                vals = []
                for item, dec in zip(items, coded):
                    probe = item["exact"].copy()
                    probe[layer, kind] = dec[layer, kind]
                    vals.append(win.kl(item, probe, a.sensitivity_tokens))
                kl[layer, kind] = max(float(np.mean(vals)), 1e-12)
            log(f"[calibrate] layer {layer + 1}/{L}: KL keys {kl[layer, 0]:.2e} values {kl[layer, 1]:.2e} "
                f"({time.time() - t0:.0f} s)")
        weights = np.round(np.clip(np.sqrt(np.median(kl) / kl), WEIGHT_RANGE[0], WEIGHT_RANGE[1]), 3)
        prof["group_step_weights"] = [[float(w) for w in row] for row in weights]

    # 3. Level scales, from fits rather than single noisy trials (top-1 over a few hundred tokens
    # moves by a step of 1/n): per level KL against the scale, pooled over the levels the top-1
    # disagreement and perplexity excess against KL; each level gets the scale whose fitted KL
    # keeps its floor with the margin, checked by a trial (a miss steps the scale down).
    samples: dict[int, list[tuple[float, dict]]] = {}

    def trial(level: int, scale: float) -> dict:
        scales = [scale if i == level - 1 else 1.0 for i in range(4)]
        s = win.score(level, profile_json(dict(prof, level_step_scales=scales)).encode())
        samples.setdefault(level, []).append((scale, s))
        log(f"[calibrate] L{level} scale {scale:.3f}: top-1 {s['top1']:.4f} ppl {s['ppl_ratio']:.4f} "
            f"KL {s['kl']:.2e} {s['compression']:.2f}x ({time.time() - t0:.0f} s)")
        return s

    targets = {level: (1 - (1 - t) * (1 - a.margin), 1 + (p - 1) * (1 - a.margin)) for level, (t, p) in FLOORS.items()}
    for level in (1, 2, 3, 4):
        # Bracket the target: halve or double the scale until the trials straddle it.
        scale = a.start_scale
        for _ in range(8):
            s = trial(level, scale)
            keeps = keeps_floor(s, targets[level])
            below = [sc for sc, t in samples[level] if keeps_floor(t, targets[level])]
            above = [sc for sc, t in samples[level] if not keeps_floor(t, targets[level])]
            if below and above:
                break
            scale = scale * 2 if keeps else scale / 2
            if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
                break
        # Two trials inside the bracket, so each level's KL fit has points around its target.
        lo, hi = max(below, default=SCALE_RANGE[0]), min(above, default=SCALE_RANGE[1])
        for f in (1 / 3, 2 / 3):
            trial(level, float(np.exp(np.log(lo) + f * (np.log(hi) - np.log(lo)))))
    fit = error_fits(samples)
    log(f"[calibrate] fits over {sum(map(len, samples.values()))} trials: 1 - top-1 = {np.exp(fit['top1'][0]):.3g} "
        f"KL^{fit['top1'][1]:.3f}, ppl - 1 = {np.exp(fit['ppl'][0]):.3g} KL^{fit['ppl'][1]:.3f}")
    scales, reached = [], {}
    for level in (1, 2, 3, 4):
        want_top1, want_ppl = targets[level]
        kl_target = min(kl_for(fit["top1"], 1 - want_top1), kl_for(fit["ppl"], want_ppl - 1))
        scale = scale_for_kl(samples[level], kl_target)
        log(f"[calibrate] L{level}: KL target {kl_target:.2e} -> scale {scale:.4f}")
        # The guard allows the trial's own noise: two standard deviations of a top-1 rate over n tokens.
        t_floor, p_floor = FLOORS[level]
        guard = (t_floor - 2 * np.sqrt(t_floor * (1 - t_floor) / (a.windows * a.continuation)), p_floor)
        for _ in range(4):
            s = trial(level, scale)
            if keeps_floor(s, guard) or scale <= SCALE_RANGE[0]:
                break  # the fit's pick, unless its trial misses the floor by more than its noise
            scale = max(scale * 2 ** -0.25, SCALE_RANGE[0])
        scales.append(float(np.round(scale, 4)))
        reached[level] = s
    prof["level_step_scales"] = scales
    prof["calibrated"] = not a.uniform
    prof["model"] = model_id
    prof["source"] = (f"tools/calibrate_llama.py, {a.oracle} oracle, {a.windows} windows of {a.tokens}+{a.continuation} "
                      f"tokens of {', '.join(texts)}: key-pair energy of the {'keys' if a.uniform else a.key_energy}; step weights "
                      + (f"from {Path(a.weights_from).name}" if a.weights_from else
                         "sqrt(median KL / KL) of one group at its level-2 encoding, clipped to 1/32...8")
                      + f"; level scales from KL fits, aiming at each floor's error times {1 - a.margin:g}")
    Path(a.output).write_text(profile_json(prof))
    for level, s in reached.items():
        log(f"[calibrate] L{level}: scale {scales[level - 1]}, top-1 {s['top1']:.4f} ppl {s['ppl_ratio']:.4f} "
            f"KL {s['kl']:.2e} at {s['compression']:.2f}x")
    print(f"{a.output}: {model_id}, {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
