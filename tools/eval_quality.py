#!/usr/bin/env python3
"""Measure how much a lossy (decoded) KV cache changes SmolLM2's predictions.

usage:
  eval_quality.py TEXTFILE [DECODED.safetensors ...] [--continuation 256] [--json]
                  [--exact EXACT.safetensors] [--cachegen-baseline] [--int8-baseline]
                  [--context N] [--compressed-size BYTES_OR_FILE ...]

The context is the `tokens` tensor of DECODED (it must equal the text's tokens
at metadata offset_tokens, default 0); the continuation is the next
--continuation text tokens.  The continuation is run on top of
  (a) the exact context KV (recomputed in float32, or read from --exact), and
  (b) each decoded KV,
and we report top-1 agreement of (b) with (a), perplexity of both, their ratio
ppl(b)/ppl(a) and the mean KL(a||b).  Metric convention (see kvmodel.py): logits
at continuation position i predict continuation token i+1, i.e. n-1 predictions.

--cachegen-baseline also evaluates the exact KV after CacheGen's quantization
(LMCache defaults) and estimates its size; --int8-baseline (implied by
--cachegen-baseline) adds an int8 per-token symmetric row.  Without a DECODED
file the context length is --context (default 1024).
--compressed-size gives the kvstore size of each DECODED file (bytes, or a path
whose file size is used) so its size ratio vs fp16 is reported too.

--json prints one JSON object:
  {"text", "n_ctx", "n_cont", "n_pred", "fp16_bytes", "exact": {"ppl", "source"},
   "results": {"decoded": {...}, "decoded_2": {...}, "cachegen": {...}, "int8_token": {...}}}
each result has top1, ppl, ppl_ratio, kl and (when known) "size": {"bytes", "ratio_vs_fp16",
"bits_per_value", ...}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kvmodel  # noqa: E402  (first: it picks the BLAS thread count before numpy loads)
import numpy as np  # noqa: E402
import st_io  # noqa: E402
from cachegen_baseline import POINTS as CACHEGEN_POINTS, entropy_bits  # noqa: E402

# --------------------------------------------------------------------------- CacheGen
# CacheGen as shipped in LMCache (github.com/LMCache/LMCache):
#  * lmcache/v1/storage_backend/naive_serde/cachegen_basics.py, CacheGenConfig.from_model_name:
#    for a model not in its table with num_hidden_layers >= 10 the default is
#      K: layers [0,10) -> 32 bins, [10,L) -> 16 bins;  V: layers [0,2) -> 32 bins, [2,L) -> 16
#    (and 32 bins everywhere when L < 10).  Mistral-7B / Llama-3.1-8B use the same split.
#  * lmcache/storage_backend/serde/cachegen_encoder.py, torch_quant_vectorized / _split_kv:
#    K and V are reshaped to [layers, tokens, heads*head_dim]; per (layer, token) the scale is
#    max1 = amax(|x|) over all channels, MAX = bins//2 - 1, symbol = round(x * MAX / max1) + MAX;
#    max1 is shipped per token per layer (in the KV dtype, fp16 here).  Symbols are arithmetic
#    coded (torchac) with a CDF per (layer, channel) computed per chunk; the CDF table is
#    int16 [2*layers, channels, max_bins+1] and is shipped with every chunk
#    (LMCache chunk_size default 256 tokens).
CACHEGEN_CHUNK = 256


def cachegen_bins(n_layers: int):
    """LMCache's default bins per layer for keys and values (tools/cachegen_baseline.py)."""
    b = CACHEGEN_POINTS["cachegen"].bins(n_layers)
    return b[:, 0], b[:, 1]


def _entropy_bits(sym, nbins):
    """Sum over (layer, kv, channel) of n_tokens * H(symbols) in bits.

    sym: int [L, 2, N, C] with values in [0, nbins)."""
    L2, N, C = sym.shape[0] * sym.shape[1], sym.shape[2], sym.shape[3]
    return entropy_bits(sym.reshape(L2, N, C).transpose(0, 2, 1).reshape(L2 * C, N), nbins)


def cachegen_quantize(kv):
    """kv float [L,2,N,KVH,hd] -> (dequantized float32 kv, size dict)."""
    L, _, N, KVH, hd = kv.shape
    C = KVH * hd
    x = kv.astype(np.float16).astype(np.float32).reshape(L, 2, N, C)  # fp16 KV as in vLLM
    kb, vb = cachegen_bins(L)
    bins = np.stack([kb, vb], 1)                                        # [L, 2]
    MAX = (bins // 2 - 1).astype(np.float32)[:, :, None, None]
    mx = np.abs(x).max(-1, keepdims=True)                               # [L,2,N,1] (fp16 exact)
    safe = np.where(mx > 0, mx, 1.0).astype(np.float32)
    q = np.rint(x * (MAX / safe))
    q = np.clip(q, -MAX, MAX)
    deq = (q / MAX * safe).astype(np.float32)
    sym = (q + MAX).astype(np.int64)                                    # [0, bins-1)
    nbins = int(bins.max())
    ent_bits = _entropy_bits(sym, nbins)
    # per-chunk entropy (what LMCache's per-chunk CDF codes) + shipped CDF tables
    chunk_bits, n_chunks = 0.0, 0
    for s in range(0, N, CACHEGEN_CHUNK):
        chunk_bits += _entropy_bits(sym[:, :, s:s + CACHEGEN_CHUNK], nbins)
        n_chunks += 1
    scale_bytes = L * 2 * N * 2
    cdf_bytes = n_chunks * (2 * L) * C * (nbins + 1) * 2
    fp16 = L * 2 * N * C * 2
    total = ent_bits / 8 + scale_bytes
    shipped = chunk_bits / 8 + scale_bytes + cdf_bytes
    size = {
        "bytes": int(round(total)),
        "ratio_vs_fp16": total / fp16,
        "bits_per_value": total * 8 / (L * 2 * N * C),
        "entropy_bytes": ent_bits / 8,
        "scale_bytes": scale_bytes,
        "note": "entropy of symbols per (layer,K/V,channel) over the whole context + fp16 "
                "per-token scales (lower bound; excludes CDF tables)",
        "lmcache_chunked_bytes": int(round(shipped)),
        "lmcache_chunked_ratio_vs_fp16": shipped / fp16,
        "lmcache_cdf_bytes": cdf_bytes,
        "bins_k": kb.tolist(), "bins_v": vb.tolist(),
    }
    return deq.reshape(kv.shape), size


def int8_per_token(kv):
    """Symmetric int8 per (layer, K/V, token) over all channels, fp16 scale."""
    L, _, N, KVH, hd = kv.shape
    C = KVH * hd
    x = kv.astype(np.float32).reshape(L, 2, N, C)
    mx = np.abs(x).max(-1, keepdims=True)
    scale = (np.where(mx > 0, mx, 1.0) / 127.0).astype(np.float16).astype(np.float32)
    q = np.clip(np.rint(x / scale), -127, 127)
    deq = (q * scale).astype(np.float32).reshape(kv.shape)
    nbytes = L * 2 * N * (C + 2)
    fp16 = L * 2 * N * C * 2
    return deq, {"bytes": nbytes, "ratio_vs_fp16": nbytes / fp16,
                 "bits_per_value": nbytes * 8 / (L * 2 * N * C),
                 "note": "1 byte per value + fp16 scale per (layer, K/V, token)"}


# --------------------------------------------------------------------------- evaluation

def fp16_bytes(model, n_ctx) -> int:
    return model.n_layers * 2 * n_ctx * model.n_kv_heads * model.head_dim * 2


def ulp_noise(kv, seed=0):
    """The exact KV as fp16 with every value moved one ulp up or down at random: the noise floor
    of any change to an fp16 cache (a codec's error should be compared with it)."""
    h = np.asarray(kv, np.float32).astype(np.float16)
    up = np.random.default_rng(seed).random(h.shape) < 0.5
    moved = np.where(up, np.nextafter(h, np.float16(np.inf)), np.nextafter(h, np.float16(-np.inf)))
    return moved.astype(np.float32), {"bytes": int(h.size * 2), "ratio_vs_fp16": 1.0, "bits_per_value": 16.0}


def load_kv_file(path):
    """-> (kv float32 [L,2,N,KVH,hd], tokens int list, metadata)."""
    t, meta = st_io.load(path)
    if "kv" not in t or "tokens" not in t:
        raise SystemExit(f"error: {path} lacks a 'kv' or 'tokens' tensor (has {sorted(t)})")
    return t["kv"].astype(np.float32, copy=False), [int(v) for v in t["tokens"]], meta


def check_context(text_tokens, ctx_tokens, offset, label) -> None:
    n = len(ctx_tokens)
    want = list(text_tokens[offset:offset + n])
    if want != list(ctx_tokens):
        bad = next((i for i, (a, b) in enumerate(zip(want, ctx_tokens)) if a != b), len(want))
        raise SystemExit(f"error: {label}: its {n} context tokens differ from the text's tokens "
                         f"{offset}..{offset + n - 1} (first mismatch at index {bad}); "
                         f"wrong text file or offset?")


def evaluate(text_tokens, n_ctx, decoded_kv_list=(), n_cont=256, exact_kv=None, offset=0,
             baselines=(), model=None, names=None):
    """Evaluate several KV caches of text_tokens[offset:offset+n_ctx] against one exact pass.

    decoded_kv_list: float arrays [L,2,n_ctx,KVH,hd]; baselines: subset of
    {"cachegen", "int8_token", "ulp"} computed from the exact KV (ulp: +-1 ulp of fp16 noise).  Returns a dict like the
    --json output (without logits)."""
    m = model or kvmodel.load_model()
    text_tokens = list(text_tokens)
    need = offset + n_ctx + n_cont
    if n_cont < 2:
        raise ValueError("continuation must be >= 2 tokens")
    if len(text_tokens) < need:
        raise SystemExit(f"error: text has {len(text_tokens)} tokens, need {need} "
                         f"(offset {offset} + context {n_ctx} + continuation {n_cont})")
    ctx = text_tokens[offset:offset + n_ctx]
    cont = text_tokens[offset + n_ctx:need]
    source = "file" if exact_kv is not None else "recomputed-f32"
    if exact_kv is None:
        exact_kv = m.extract_kv(ctx)
    ref = kvmodel.continuation_quality(exact_kv, cont, model=m)
    ref_logits = ref["logits"]
    out = {"n_ctx": n_ctx, "n_cont": n_cont, "n_pred": n_cont - 1, "offset_tokens": offset,
           "fp16_bytes": fp16_bytes(m, n_ctx),
           "exact": {"ppl": ref["ppl"], "source": source}, "results": {}}

    def run(name, kv, extra=None):
        kv = np.asarray(kv, np.float32)
        if kv.shape != exact_kv.shape:
            raise SystemExit(f"error: {name}: kv shape {list(kv.shape)} != expected "
                             f"{list(exact_kv.shape)}")
        r = kvmodel.continuation_quality(kv, cont, ref_logits=ref_logits, model=m)
        e = {"top1": r["top1"], "ppl": r["ppl"], "ppl_ratio": r["ppl"] / ref["ppl"],
             "kl": r["kl"]}
        if extra:
            e.update(extra)
        out["results"][name] = e

    names = list(names) if names else []
    for i, kv in enumerate(decoded_kv_list):
        nm = names[i] if i < len(names) else ("decoded" if i == 0 else f"decoded_{i + 1}")
        run(nm, kv)
    if "cachegen" in baselines:
        deq, size = cachegen_quantize(exact_kv)
        run("cachegen", deq, {"size": size})
    if "int8_token" in baselines:
        deq, size = int8_per_token(exact_kv)
        run("int8_token", deq, {"size": size})
    if "ulp" in baselines:
        deq, size = ulp_noise(exact_kv)
        run("ulp", deq, {"size": size})
    return out


def _size_arg(v):
    if os.path.exists(v):
        return os.path.getsize(v)
    try:
        return int(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{v!r} is neither a byte count nor a file")


def format_table(res) -> str:
    lines = [f"text: {res.get('text', '?')}  context {res['n_ctx']} tokens "
             f"(offset {res['offset_tokens']})  continuation {res['n_cont']} "
             f"({res['n_pred']} predictions)  exact KV: {res['exact']['source']}",
             f"{'method':<14} {'top1':>7} {'ppl':>9} {'ppl_ratio':>9} {'KL(nats)':>9} "
             f"{'size/fp16':>9} {'bits/val':>8}",
             f"{'exact':<14} {1.0:>7.4f} {res['exact']['ppl']:>9.3f} {1.0:>9.4f} {0.0:>9.5f} "
             f"{1.0:>9.4f} {16.0:>8.3f}"]
    for name, e in res["results"].items():
        s = e.get("size")
        sz = f"{s['ratio_vs_fp16']:>9.4f} {s['bits_per_value']:>8.3f}" if s else f"{'-':>9} {'-':>8}"
        lines.append(f"{name:<14} {e['top1']:>7.4f} {e['ppl']:>9.3f} {e['ppl_ratio']:>9.4f} "
                     f"{e['kl']:>9.5f} {sz}")
    cg = res["results"].get("cachegen")
    if cg:
        s = cg["size"]
        lines.append(f"cachegen size: entropy {s['entropy_bytes']:.0f} B + scales "
                     f"{s['scale_bytes']} B = {s['bytes']} B; as LMCache ships it "
                     f"(per-{CACHEGEN_CHUNK}-token chunk CDFs {s['lmcache_cdf_bytes']} B): "
                     f"{s['lmcache_chunked_bytes']} B = {s['lmcache_chunked_ratio_vs_fp16']:.4f} of fp16")
    lines.append(f"fp16 KV size: {res['fp16_bytes']} B")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("text")
    ap.add_argument("decoded", nargs="*", help="decoded KV .safetensors (kv + tokens)")
    ap.add_argument("--continuation", type=int, default=256)
    ap.add_argument("--exact", help="exact KV .safetensors to use instead of recomputing")
    ap.add_argument("--cachegen-baseline", action="store_true")
    ap.add_argument("--int8-baseline", action="store_true")
    ap.add_argument("--ulp-baseline", action="store_true", help="the exact KV with +-1 ulp of fp16 noise (the noise floor)")
    ap.add_argument("--context", type=int, default=None,
                    help="context tokens when no DECODED file is given (default 1024)")
    ap.add_argument("--offset-tokens", type=int, default=None,
                    help="context start in the text (default: DECODED metadata or 0)")
    ap.add_argument("--compressed-size", type=_size_arg, action="append", default=[],
                    help="kvstore size of each DECODED file, bytes or a file (repeatable)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if not a.decoded and not a.cachegen_baseline and not a.int8_baseline and not a.ulp_baseline:
        ap.error("give a DECODED file and/or --cachegen-baseline / --int8-baseline")
    t0 = time.time()
    m = kvmodel.load_model()
    with open(a.text, encoding="utf-8") as f:
        toks = m.tokenize(f.read())

    decoded, ctx_tokens, offset = [], None, a.offset_tokens
    for p in a.decoded:
        kv, ct, meta = load_kv_file(p)
        off = offset if offset is not None else int(meta.get("offset_tokens", 0) or 0)
        if ctx_tokens is None:
            ctx_tokens, offset = ct, off
        elif ct != ctx_tokens:
            raise SystemExit(f"error: {p}: context tokens differ from {a.decoded[0]}")
        if kv.shape[2] != len(ct):
            raise SystemExit(f"error: {p}: kv has {kv.shape[2]} tokens but tokens has {len(ct)}")
        check_context(toks, ct, off, p)
        decoded.append(kv)
    if offset is None:
        offset = 0
    exact = None
    if a.exact:
        exact, et, emeta = load_kv_file(a.exact)
        if ctx_tokens is not None and et != ctx_tokens:
            raise SystemExit(f"error: --exact {a.exact}: tokens differ from the decoded file's")
        check_context(toks, et, offset, a.exact)
        ctx_tokens = ctx_tokens or et
    if ctx_tokens is not None:
        n_ctx = len(ctx_tokens)
        if a.context is not None and a.context != n_ctx:
            raise SystemExit(f"error: --context {a.context} but the KV files hold {n_ctx} tokens")
    else:
        n_ctx = a.context or 1024
    baselines = []
    if a.cachegen_baseline:
        baselines += ["cachegen", "int8_token"]
    elif a.int8_baseline:
        baselines += ["int8_token"]
    if a.ulp_baseline:
        baselines += ["ulp"]
    names = [("decoded" if i == 0 else f"decoded_{i + 1}") for i in range(len(decoded))]
    res = evaluate(toks, n_ctx, decoded, n_cont=a.continuation, exact_kv=exact, offset=offset,
                   baselines=baselines, model=m, names=names)
    res = {"text": os.path.basename(a.text), **res}
    fp16 = res["fp16_bytes"]
    for i, p in enumerate(a.decoded):
        e = res["results"][names[i]]
        e["file"] = p
        if i < len(a.compressed_size):
            b = a.compressed_size[i]
            e["size"] = {"bytes": b, "ratio_vs_fp16": b / fp16, "bits_per_value": b * 8 / (fp16 / 2)}
    res["seconds"] = round(time.time() - t0, 2)
    if a.json:
        print(json.dumps(res))
    else:
        print(format_table(res))


if __name__ == "__main__":
    main()
