#!/usr/bin/env python3
"""Codec quality table: every level on real SmolLM2 KV, next to CacheGen and int8, averaged over texts.

usage: bench_codec_quality.py [--texts emma_ch1 persuasion_ch1 mansfield_park_ch1-2]
                              [--levels 0 1 2 3 4] [--chunk 256] [--data /work/data]
                              [--harness .build/release/kvcodec-harness] [--markdown]

For each text: extracts the 1024-token KV (tools/extract_kv.py, F16; cached under --data),
encodes it in chunks of --chunk tokens at each level with the codec harness (size = whole
containers incl. header and tables), decodes it, and runs tools/eval_quality.py against the
exact F16 KV with --cachegen-baseline. Prints per-level means of top-1 agreement, perplexity
ratio, size vs fp16 and KL, with the CacheGen and int8 rows side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")


def sh(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--texts", nargs="+", default=["emma_ch1", "persuasion_ch1", "mansfield_park_ch1-2"])
    ap.add_argument("--levels", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--data", default=os.environ.get("KVSTORE_DATA", "/tmp/kvstore-codec-bench"))
    ap.add_argument("--harness", default=os.path.join(ROOT, ".build", "release", "kvcodec-harness"))
    ap.add_argument("--tools", default=TOOLS, help="directory with extract_kv.py and eval_quality.py")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--alphas", nargs="+", type=float, default=None,
                    help="tuning: base step (alpha) per entry of --levels, overriding the level profiles")
    ap.add_argument("--gamma", type=float, default=None,
                    help="tuning, with --alphas: key-channel step gamma (QuantProfile.keyChannelGamma)")
    ap.add_argument("--no-baselines", action="store_true", help="skip the CacheGen/int8 rows (faster tuning runs)")
    a = ap.parse_args(argv)
    os.makedirs(a.data, exist_ok=True)
    rows = {}  # name -> list of (top1, ppl_ratio, ratio)
    for text in a.texts:
        tpath = os.path.join(a.tools, "texts", text + ".txt")
        kv = os.path.join(a.data, f"{text}_{a.tokens}.safetensors")
        if not os.path.exists(kv):
            sh([sys.executable, os.path.join(a.tools, "extract_kv.py"), tpath, kv, "--tokens", str(a.tokens)])
        decoded, ratios = [], []
        for i, level in enumerate(a.levels):
            extra = [str(a.alphas[i])] if a.alphas else []
            if extra and a.gamma is not None:
                extra.append(str(a.gamma))
            out = os.path.join(a.data, f"{text}_L{level}{'_a' + '_'.join(extra) if extra else ''}.safetensors")
            line = sh([a.harness, "roundtrip", kv, out, str(level), str(a.chunk), *extra])
            ratios.append(float(line.split()[-1]))
            decoded.append(out)
        res = json.loads(sh([sys.executable, os.path.join(a.tools, "eval_quality.py"), tpath, *decoded,
                             "--exact", kv, *([] if a.no_baselines else ["--cachegen-baseline"]), "--json"]))["results"]
        keys = ["decoded"] + [f"decoded_{i + 1}" for i in range(1, len(decoded))]
        for i, (level, key, ratio) in enumerate(zip(a.levels, keys, ratios)):
            r = res[key]
            name = f"kvstore level {level}" + (f" (alpha {a.alphas[i]})" if a.alphas else "")
            rows.setdefault(name, []).append((r["top1"], r["ppl_ratio"], ratio, r["kl"]))
        for base in ("cachegen", "int8_token"):
            if base in res:
                r = res[base]
                size = r.get("size", {})
                ratio = 1 / size["ratio_vs_fp16"] if size.get("ratio_vs_fp16") else float("nan")
                label = {"cachegen": "CacheGen (entropy bound, no CDF tables)", "int8_token": "int8 per token"}[base]
                rows.setdefault(label, []).append((r["top1"], r["ppl_ratio"], ratio, r["kl"]))
                if size.get("lmcache_chunked_ratio_vs_fp16"):
                    rows.setdefault("CacheGen as LMCache ships it (256-token chunks + CDFs)", []).append(
                        (r["top1"], r["ppl_ratio"], 1 / size["lmcache_chunked_ratio_vs_fp16"], r["kl"]))
        print(f"{text}: done", file=sys.stderr)
    n = len(a.texts)
    print(f"real SmolLM2-135M KV, {a.tokens}-token context, 256-token continuation, chunks of {a.chunk} tokens, "
          f"mean over {n} texts ({', '.join(a.texts)})")
    print("| method | top-1 agreement | perplexity ratio | size vs fp16 | mean KL (nats) |")
    print("|---|---|---|---|---|")
    for name, vals in rows.items():
        t = sum(v[0] for v in vals) / len(vals)
        p = sum(v[1] for v in vals) / len(vals)
        s = sum(v[2] for v in vals) / len(vals)
        k = sum(v[3] for v in vals) / len(vals)
        print(f"| {name} | {t:.4f} | {p:.4f} | {s:.2f}x | {k:.5f} |")


if __name__ == "__main__":
    main()
