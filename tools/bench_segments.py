#!/usr/bin/env python3
"""RAG-style reuse quality: three documents encoded independently (after a shared system prefix,
as APE does), stored with `kvstore put --independent`, assembled in a new order with
`kvstore get --segments` (keys re-rotated to their new positions), then a question and a
continuation are run on top; compared with a full prefill of the same prompt.

Variants (continuation logits vs the full prefill's, over the same positions):
  assembled          segments re-rotated to their new positions (what kvstore returns)
  assembled+repair   plus CacheBlend-style repair: the rows kvstore reports (`recompute`, the
                     first tokens of each moved segment) recomputed on top of the KV before them
  not re-rotated     the same segments left at their stored positions (all three overlap)
  no documents       system prefix + question only (what the documents are worth)

usage: bench_segments.py [--doc-tokens 120] [--recompute-tokens 16] [--json OUT]
needs the built binary ($KVSTORE_BIN, default .build/debug/kvstore) and the model (kvmodel.py).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402

import kvmodel  # noqa: E402
import reuse_io  # noqa: E402

TEXTS = Path(__file__).resolve().parent / "texts"
SYSTEM = "You are a helpful assistant. Answer the question using only the documents below.\n\n"


def doc_tokens(m, name, start_char, n):
    """-> (document tokens, the next 48 tokens of its source text)."""
    text = m.tokenize((TEXTS / name).read_text()[start_char:])
    return m.tokenize("Document:\n") + text[:n] + m.tokenize("\n\n"), text[n:n + 48]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--doc-tokens", type=int, default=120)
    ap.add_argument("--recompute-tokens", type=int, default=16)
    ap.add_argument("--json", help="write the figures here")
    a = ap.parse_args(argv)
    if not reuse_io.kvstore_bin().exists():
        raise SystemExit(f"error: kvstore binary not found at {reuse_io.kvstore_bin()}; build it or set KVSTORE_BIN")
    m = kvmodel.load_model()
    rc = m.rope_config()
    t0 = time.time()

    prefix = m.tokenize(SYSTEM)
    docs, nexts = zip(*[doc_tokens(m, "modern_bread_essay.txt", 0, a.doc_tokens),
                        doc_tokens(m, "persuasion_ch1.txt", 60, a.doc_tokens),
                        doc_tokens(m, "northanger_abbey_ch1-2.txt", 0, a.doc_tokens)])
    # The question asks for a passage of the first document; the continuation is that passage, so
    # predicting it needs attention across the assembled segments.
    question = m.tokenize("Question: What are the four ingredients of bread, according to the essay?\nAnswer:")
    cont = m.tokenize(" In its simplest form it needs only four ingredients: flour, water, salt and yeast. "
                      "Yet the way those ingredients are combined, rested, shaped and baked can produce "
                      "an enormous variety of loaves.")
    order = [2, 0, 1]  # the documents appear in the prompt in another order than they were stored

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        store = tmp / "store"
        md = {"model": kvmodel.MODEL_NAME, "rope_theta": rc["theta"], "rope_dim": rc["rotary_dim"], "rope_pairs": rc["pairs"]}
        # shared prefix: stored as an ordinary context
        kv_prefix = m.extract_kv(prefix)
        reuse_io.write_context(tmp / "prefix.safetensors", kv_prefix, prefix, "F16", md)
        reuse_io.kvstore("put", tmp / "prefix.safetensors", "--store", store, "--chunk-tokens", 64)
        (tmp / "prefix.json").write_text(json.dumps(prefix))
        # each document encoded once, right after the prefix (position len(prefix))
        prefix16 = kv_prefix.astype(np.float16).astype(np.float32)
        for i, d in enumerate(docs):
            _, kv = m.forward(d, past_kv=prefix16, logits=False)
            reuse_io.write_context(tmp / f"d{i}.safetensors", kv, d, "F16", md)
            reuse_io.kvstore("put", tmp / f"d{i}.safetensors", "--independent", "--prefix", tmp / "prefix.json",
                             "--store", store)
            (tmp / f"d{i}.json").write_text(json.dumps(d))
        r = reuse_io.kvstore("get", "--segments", *[tmp / f"d{i}.json" for i in order], "--prefix", tmp / "prefix.json",
                             "--recompute-tokens", a.recompute_tokens, "-o", tmp / "out.safetensors", "--store", store, "--json")
        report = json.loads(r.stdout)
        assembled, _, tokens, meta = reuse_io.read_context(tmp / "out.safetensors")
        # the same segments, not moved: what reuse without re-rotation would give
        unmoved = [kv_prefix.astype(np.float16).astype(np.float32)]
        for i in order:
            unmoved.append(reuse_io.read_context(tmp / f"d{i}.safetensors")[0])
        unmoved = np.concatenate(unmoved, axis=2)

    full_tokens = prefix + [t for i in order for t in docs[i]]
    assert tokens == full_tokens, "assembled tokens differ from the prompt"

    # CacheBlend-style repair of the reported rows, segment by segment, in prompt order
    repaired = assembled.copy()
    for seg in report["segments"]:
        rows = seg["recompute"]
        if rows:
            s = rows[0]
            _, kv = m.forward([full_tokens[j] for j in rows], past_kv=repaired[:, :, :s], logits=False)
            repaired[:, :, s:s + len(rows)] = kv.astype(np.float16).astype(np.float32)

    def with_question(ctx_kv):
        _, q_kv = m.forward(question, past_kv=ctx_kv, logits=False)
        return np.concatenate([ctx_kv, q_kv], axis=2)

    # Task "qa": question, then the answer passage copied from a document.
    # Task "continue": no question; the next 48 tokens of the last document's source text.
    tasks = {"qa": (with_question, cont), "continue": (lambda kv: kv, list(nexts[order[-1]]))}
    full_kv = m.extract_kv(full_tokens).astype(np.float16).astype(np.float32)
    variants = [("assembled", assembled), ("assembled+repair", repaired), ("not re-rotated", unmoved),
                ("no documents", kv_prefix.astype(np.float16).astype(np.float32))]
    results = {}
    for task, (prep, target) in tasks.items():
        ref = kvmodel.continuation_quality(prep(full_kv), target)
        rows = {"full prefill": {"ppl": ref["ppl"], "top1": 1.0, "kl": 0.0}}
        for name, kv in variants:
            q = kvmodel.continuation_quality(prep(kv), target, ref_logits=ref["logits"])
            rows[name] = {"ppl": q["ppl"], "top1": q["top1"], "kl": q["kl"]}
        results[task] = {"predictions": len(target) - 1, "rows": rows}
    out = {"prefix_tokens": len(prefix), "doc_tokens": [len(d) for d in docs], "order": order,
           "question_tokens": len(question), "recompute_rows": sum(len(s["recompute"]) for s in report["segments"]),
           "segments": report["segments"], "results": results, "seconds": round(time.time() - t0, 1)}
    print(f"prompt: {len(prefix)}-token prefix + documents {[len(docs[i]) for i in order]} (stored order 0,1,2; "
          f"prompt order {order}); repair recomputes {out['recompute_rows']} rows")
    for task, r in results.items():
        print(f"\ntask {task}: {r['predictions']} predictions")
        print(f"{'variant':18} {'top-1 vs full':>13} {'mean KL':>9} {'ppl':>8}")
        for name, v in r["rows"].items():
            print(f"{name:18} {v['top1'] * 100:12.1f}% {v['kl']:9.4f} {v['ppl']:8.3f}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
