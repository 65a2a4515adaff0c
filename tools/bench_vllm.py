"""Time to first token in vLLM (CPU build, fp32, SmolLM2): cold vs a prefix restored from kvstore.

For each document size (whole 256-token chunks of tools/texts), a new 32-token question follows the
document. Three vLLM processes (tools/vllm_run.py), each with vLLM's own prefix caching off unless said:
  cold     no connector: the whole prompt is prefilled;
  kvstore  KVStoreConnector on an embedded store that holds the document (put by a first request with
           another question); the document is loaded from the store, the question computed;
  vllm-pc  no connector, vLLM's own prefix cache on, warmed by the same first request: the bound.
TTFT is the wall time of a 1-token generate, the median of --reps new questions.

    python3 tools/bench_vllm.py [--sizes 1024,4096] [--threads 1] [--reps 3] [--json out.json]

Needs scripts/setup_vllm.sh (the venv and models) and libkvstore_c (swift build --product kvstore_c).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("KVSTORE_CACHE") or Path.home() / ".cache/kvstore")
VENV_PYTHON = CACHE / "vllm-venv" / "bin" / "python"
TEXTS = ["emma_ch1.txt", "persuasion_ch1.txt", "mansfield_park_ch1-2.txt", "northanger_abbey_ch1-2.txt"]
QUESTION_TOKENS = 32


def library() -> str:
    for p in [os.environ.get("KVSTORE_C_LIB"), ROOT / ".build/release/libkvstore_c.so", ROOT / ".build/debug/libkvstore_c.so"]:
        if p and Path(p).is_file():
            return str(p)
    sys.exit("libkvstore_c.so not built (swift build -c release --product kvstore_c) and KVSTORE_C_LIB unset")


def tokens(model_dir: Path, n: int, reps: int) -> tuple[list[int], list[list[int]]]:
    """The first n tokens of the texts, and reps + 1 questions of exactly QUESTION_TOKENS tokens."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    text = "\n\n".join((ROOT / "tools/texts" / t).read_text() for t in TEXTS)
    doc = tok.encode(text, add_special_tokens=False).ids
    if len(doc) < n:
        sys.exit(f"the texts hold {len(doc)} tokens, fewer than {n}")
    questions = []
    for i in range(reps + 1):
        q = tok.encode(f"\n\nQuestion {i + 1}: in a few words, what does the passage above say about the "
                       f"family, the house, money and marriage, and who speaks first? Answer:",
                       add_special_tokens=False).ids
        questions.append(q[:QUESTION_TOKENS])
    assert all(len(q) == QUESTION_TOKENS for q in questions)
    return doc[:n], questions


def run(job: dict, threads: int, tmp: Path, name: str) -> list[dict]:
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "HF_HUB_OFFLINE": "1", "KVSTORE_C_LIB": library(),
           "OMP_NUM_THREADS": str(threads), "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
    r = subprocess.run([str(VENV_PYTHON), str(ROOT / "tools/vllm_run.py"), str(path)], env=env, capture_output=True,
                       text=True, timeout=3600)
    (tmp / f"{name}.log").write_text(r.stdout + r.stderr)
    if r.returncode != 0:
        sys.exit(f"{name} failed (log {tmp / name}.log):\n{(r.stdout + r.stderr)[-3000:]}")
    return [json.loads(l[7:]) for l in r.stdout.splitlines() if l.startswith("RESULT ")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(CACHE / "vllm-models/smollm2"))
    ap.add_argument("--sizes", default="1024,4096")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    if not VENV_PYTHON.exists():
        sys.exit(f"no vLLM venv at {VENV_PYTHON} (scripts/setup_vllm.sh)")
    sizes = [int(s) for s in args.sizes.split(",")]
    model = Path(args.model)
    max_len = max(sizes) + 2 * QUESTION_TOKENS + 64
    rows = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        plan = {}
        for n in sizes:
            doc, qs = tokens(model, n, args.reps)
            plan[n] = ({"prompt_token_ids": doc + qs[0], "max_tokens": 1, "wait_stored": True},
                       [{"prompt_token_ids": doc + q, "ttft": True, "max_tokens": 1} for q in qs[1:]])
        base = {"model": str(model), "max_model_len": max_len, "warmup": True}
        results = {
            "cold": run({**base, "prompts": [p for n in sizes for p in plan[n][1]]}, args.threads, tmp, "cold"),
            "kvstore": run({**base, "store": str(tmp / "store"),
                            "prompts": [p for n in sizes for p in [plan[n][0], *plan[n][1]]]}, args.threads, tmp, "kvstore"),
            "vllm-pc": run({**base, "prefix_caching": True,
                            "prompts": [p for n in sizes for p in [plan[n][0], *plan[n][1]]]}, args.threads, tmp, "vllm-pc"),
        }
        for i, n in enumerate(sizes):
            cold = results["cold"][i * args.reps:(i + 1) * args.reps]
            warm = results["kvstore"][i * (args.reps + 1) + 1:(i + 1) * (args.reps + 1)]
            bound = results["vllm-pc"][i * (args.reps + 1) + 1:(i + 1) * (args.reps + 1)]
            med = {k: statistics.median(r["ttft_s"] for r in v) for k, v in
                   [("cold", cold), ("kvstore", warm), ("vllm-pc", bound)]}
            rows.append({"stored_tokens": n, "question_tokens": QUESTION_TOKENS, "threads": args.threads,
                         "ttft_cold_s": med["cold"], "ttft_kvstore_s": med["kvstore"], "ttft_vllm_prefix_cache_s": med["vllm-pc"],
                         "speedup": med["cold"] / med["kvstore"],
                         "kvstore_cached_tokens": [r["num_cached_tokens"] for r in warm],
                         "same_first_token": all(a["token_ids"] == b["token_ids"] for a, b in zip(cold, warm))})
    print(f"| stored tokens | cold TTFT | kvstore TTFT | speedup | vLLM prefix cache TTFT | cached (kvstore) | same first token |")
    print("|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        print(f"| {r['stored_tokens']:,} | {r['ttft_cold_s'] * 1e3:.0f} ms | {r['ttft_kvstore_s'] * 1e3:.0f} ms | "
              f"{r['speedup']:.1f}x | {r['ttft_vllm_prefix_cache_s'] * 1e3:.0f} ms | {r['kvstore_cached_tokens']} | "
              f"{r['same_first_token']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
