#!/usr/bin/env python3
"""Level floors per codec profile: calibrated vs uncalibrated, on held-out texts, in the float oracle.

usage: bench_calibration.py [--texts apache_license_2.0 libpng_manual_intro modern_bread_essay]
                            [--variant NAME=PROFILE.json|default ...] [--levels 1 2 3 4]
                            [--harness .build/release/kvcodec-harness] [--data DIR] [--json OUT]
       bench_calibration.py --rows ROWS.json [ROWS.json ...]   (print the table of saved rows)

For each text: the exact 1024-token F16 KV (tools/extract_kv.py, cached under --data), encoded in
256-token chunks at each level with each profile variant (`default` = the KV-derived profile a
store uses for a model without one), decoded, and scored against the exact KV on the next 256
tokens by the numpy forward pass (tools/eval_quality.evaluate: top-1 agreement, perplexity ratio,
KL), next to the +-1-ulp fp16 noise floor and int8 per token. Prints per-level means over the
texts with the floors (L1 >= 0.99 / <= 1.005, L2 >= 0.97 / <= 1.01, L3 >= 0.93 / <= 1.03,
L4 >= 0.85 / <= 1.08) and whether each is met.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import kvmodel  # noqa: E402  (first: BLAS threads)
import eval_quality  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
FLOORS = {1: (0.99, 1.005), 2: (0.97, 1.01), 3: (0.93, 1.03), 4: (0.85, 1.08)}


def sh(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--texts", nargs="+", default=["apache_license_2.0", "libpng_manual_intro", "modern_bread_essay"])
    ap.add_argument("--variant", action="append", default=None,
                    help="NAME=PROFILE.json, or NAME=default for the KV-derived profile (repeatable)")
    ap.add_argument("--levels", nargs="+", type=int, default=[1, 2, 3, 4])
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--continuation", type=int, default=256)
    ap.add_argument("--data", default=os.environ.get("KVSTORE_DATA", "/tmp/kvstore-codec-bench"))
    ap.add_argument("--harness", default=os.path.join(ROOT, ".build", "release", "kvcodec-harness"))
    ap.add_argument("--json", help="also write every per-text row to this file")
    ap.add_argument("--rows", nargs="+", help="print the table of rows saved by --json (no evaluation)")
    a = ap.parse_args(argv)
    if a.rows:
        rows = [r for f in a.rows for r in json.load(open(f))]
        print_table(rows, sorted({r["text"] for r in rows}), a)
        return
    variants = [v.split("=", 1) for v in (a.variant or [f"calibrated={ROOT}/profiles/SmolLM2-135M-Instruct-Q4_1.json",
                                                         "uncalibrated=default"])]
    os.makedirs(a.data, exist_ok=True)
    m = kvmodel.load_model()
    rows = []  # dicts: text, method, level, top1, ppl_ratio, kl, ratio
    for text in a.texts:
        tpath = os.path.join(TOOLS, "texts", text + ".txt")
        kvf = os.path.join(a.data, f"{text}_{a.tokens}.safetensors")
        if not os.path.exists(kvf):
            sh([sys.executable, os.path.join(TOOLS, "extract_kv.py"), tpath, kvf, "--tokens", str(a.tokens)])
        decoded, labels = [], []
        for name, prof in variants:
            for level in a.levels:
                out = os.path.join(a.data, f"{text}_{name}_L{level}.safetensors")
                extra = [] if prof == "default" else ["--profile", prof]
                line = sh([a.harness, "roundtrip", kvf, out, str(level), "256", *extra]).strip().splitlines()[-1]
                ratio = float(line.split()[-1])
                kv, _, _ = eval_quality.load_kv_file(out)
                decoded.append(kv)
                labels.append((name, level, ratio))
        exact, _, _ = eval_quality.load_kv_file(kvf)
        toks = m.tokenize(open(tpath, encoding="utf-8").read())
        names = [f"{n} L{l}" for n, l, _ in labels]
        res = eval_quality.evaluate(toks, a.tokens, decoded, n_cont=a.continuation, exact_kv=exact,
                                    baselines=["int8_token", "ulp"], model=m, names=names)["results"]
        for (name, level, ratio), key in zip(labels, names):
            r = res[key]
            rows.append({"text": text, "method": name, "level": level, "top1": r["top1"],
                         "ppl_ratio": r["ppl_ratio"], "kl": r["kl"], "ratio": ratio})
        for base, label in (("ulp", "fp16 +-1 ulp (noise floor)"), ("int8_token", "int8 per token")):
            r = res[base]
            rows.append({"text": text, "method": label, "level": None, "top1": r["top1"], "ppl_ratio": r["ppl_ratio"],
                         "kl": r["kl"], "ratio": 1 / r["size"]["ratio_vs_fp16"]})
        print(f"{text}: done", file=sys.stderr, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)

    print_table(rows, a.texts, a)


def print_table(rows, texts, a):
    print(f"float oracle (numpy SmolLM2-135M forward pass), {a.tokens}-token context, {a.continuation}-token "
          f"continuation, 256-token chunks, mean over {len(texts)} texts ({', '.join(texts)})")
    print("| method | level | top-1 | ppl ratio | size vs fp16 | KL (nats) | floor (top-1 / ppl) | met |")
    print("|---|---|---|---|---|---|---|---|")
    groups = {}
    for r in rows:
        groups.setdefault((r["method"], r["level"]), []).append(r)
    for (method, level), rs in groups.items():
        n = len(rs)
        t, p = sum(r["top1"] for r in rs) / n, sum(r["ppl_ratio"] for r in rs) / n
        k, s = sum(r["kl"] for r in rs) / n, sum(r["ratio"] for r in rs) / n
        floor = FLOORS.get(level)
        met = "" if floor is None else ("yes" if t >= floor[0] and p <= floor[1] else "**no**")
        fl = "" if floor is None else f">= {floor[0]} / <= {floor[1]}"
        kl = f"{k:.5f}" if k >= 1e-4 else f"{k:.1e}"
        print(f"| {method} | {level or ''} | {t:.4f} | {p:.4f} | {s:.2f}x | {kl} | {fl} | {met} |")


if __name__ == "__main__":
    main()
