#!/usr/bin/env python3
"""llama.cpp in process, with its prefix KV from kvstore: a long document is prefilled once (cold)
and stored; a later request streams it back, restores it into the engine with
llama_state_seq_set_data and prefills only the question.

usage: PYTHONPATH=$LLAMA_HOME/llama_cpp_python-0.3.36 LLAMA_CPP_LIB_PATH=$LLAMA_HOME/build/bin \\
       llama_restore.py URL MODEL.gguf TEXT [--tokens 4000] [--level 0] [--slo-ms 60000] [--threads 1]

($LLAMA_HOME is what scripts/build_llama.sh builds.) Prints the time to first token cold (prefill of
document and question) and warm (stream + decode + restore + prefill of the question), and compares
the warm next-token logits with those after restoring the engine's own saved state the same way.
Exits 1 when the warm path did not restore the whole document or, at the lossless level 0, when its
logits are not identical to the own-state ones.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

import kvstore
from kvstore.llama_engine import Engine

QUESTION = "\n\nQuestion: Summarise the passage above in two sentences, naming every person in it.\nAnswer:"


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64) - x.max()
    return x - np.log(np.exp(x).sum())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("gguf")
    ap.add_argument("text")
    ap.add_argument("--tokens", type=int, default=4000, help="document tokens (the stored prefix)")
    ap.add_argument("--level", type=int, default=0, help="codec level of the streamed chunks (0 lossless ... 4)")
    ap.add_argument("--slo-ms", type=float, default=60000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto")
    a = ap.parse_args()

    client = kvstore.Client(a.url)
    model = kvstore.llama.gguf_model(a.gguf)
    engine = Engine(a.gguf, a.tokens + 256, a.threads, flash_attn={"auto": -1, "on": 1, "off": 0}[a.flash_attn])
    doc = engine.tokenize(Path(a.text).read_text(), bos=True)[:a.tokens]
    if len(doc) < a.tokens:
        sys.exit(f"{a.text} has only {len(doc)} tokens")
    query = doc + engine.tokenize(QUESTION, bos=False)
    print(f"model {model.identity}; document {len(doc)} tokens + question {len(query) - len(doc)} tokens")

    # The engine's state layout, from a one-token state of its own.
    engine.prefill(query[:1], 0)
    _, layout = kvstore.llama.state_to_kv(engine.state(), model)
    engine.clear()

    # Cold: the engine prefills document and question; the document's KV goes to kvstore.
    t0 = time.perf_counter()
    engine.prefill(query, 0)
    ttft_cold = time.perf_counter() - t0
    own = engine.state()
    kv, _ = kvstore.llama.state_to_kv(own, model, count=len(doc))
    report = client.put(kv, tokens=doc, model=model.identity, levels=sorted({0, a.level}))
    print(f"cold: TTFT {ttft_cold:.2f} s (prefill of {len(query)} tokens); stored {len(doc)} tokens "
          f"({report['chunks']} chunks, {report['storedBytes'] / 1e6:.1f} MB at levels {sorted({0, a.level})})")

    # The reference for the warm logits: the engine's own saved state, cut to the document and
    # restored the same way (a one-pass prefill batches differently, so its logits differ slightly).
    engine.clear()
    engine.restore(own)
    engine.keep(len(doc))
    reference = engine.prefill(query[len(doc):], len(doc))
    engine.clear()

    # Warm: stream the stored prefix, restore it, prefill the question only.
    t0 = time.perf_counter()
    stream = client.stream(query, slo_ms=a.slo_ms, level=a.level, model=model.identity)
    kv = stream.kv()
    n = stream.kv_tokens
    t_stream = time.perf_counter() - t0
    if kv is None or n == 0:
        print("warm: kvstore returned no KV")
        return 1
    engine.restore(kvstore.llama.kv_to_state(kv, layout))
    t_restore = time.perf_counter() - t0
    warm = engine.prefill(query[n:], n)
    ttft_warm = time.perf_counter() - t0
    levels = sorted({c.level for c in stream.chunks if c.level is not None})
    wire = sum(c.nbytes for c in stream.chunks)
    print(f"warm: TTFT {ttft_warm:.2f} s = stream+decode {t_stream:.2f} s ({n} tokens, {len(stream.chunks)} chunks, "
          f"levels {levels}, {wire / 1e6:.1f} MB) + restore {t_restore - t_stream:.2f} s + prefill of "
          f"{len(query) - n} tokens {ttft_warm - t_restore:.2f} s")
    print(f"speedup: {ttft_cold / ttft_warm:.1f}x")

    top_ref, top_warm = int(reference.argmax()), int(warm.argmax())
    p, q = log_softmax(reference), log_softmax(warm)
    kl = float((np.exp(p) * (p - q)).sum())
    print(f"first token: own-state restore {top_ref} {engine.piece(top_ref)!r}, from kvstore {top_warm} "
          f"{engine.piece(top_warm)!r}; max |logit difference| {float(np.abs(reference - warm).max()):.4g}; "
          f"KL {kl:.3g}")
    if n != len(doc):
        print(f"warm: {n} of {len(doc)} document tokens restored")
        return 1
    return 0 if (a.level != 0 or np.array_equal(reference, warm)) else 1


if __name__ == "__main__":
    sys.exit(main())
