#!/usr/bin/env python3
"""The KV cache llama.cpp computes for a text, as a kvstore context file (safetensors with `kv`,
`tokens` and the model id): every position of every layer, sliding-window layers included.

    PYTHONPATH=$LLAMA_HOME/llama_cpp_python-0.3.36:python LLAMA_CPP_LIB_PATH=$LLAMA_HOME/build/bin \\
    tools/llama_kv.py --model smollm2|gemma3|GGUF TEXT -o ctx.safetensors [--tokens 1024] [--oracle float]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "tools"))
import kvstore  # noqa: E402
from bench_llama_quality import float_gguf, model_gguf  # noqa: E402
from kvstore.llama_engine import Engine  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("text")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--model", default="smollm2", help="smollm2, gemma3 or a GGUF path")
    ap.add_argument("--tokens", type=int, default=1024)
    ap.add_argument("--oracle", choices=("engine", "float"), default="engine",
                    help="float: the model dequantized to F32 with an F32 cache")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    gguf = model_gguf(a.model)
    run = float_gguf(gguf) if a.oracle == "float" else gguf
    model = kvstore.llama.gguf_model(run)
    engine = Engine(run, a.tokens + 64, a.threads, flash_attn=0, kv_type="f32" if a.oracle == "float" else "f16")
    ids = engine.tokenize(Path(a.text).read_text(), bos=True)[:a.tokens]
    kv, _, _ = engine.prefill_kv(ids, model)
    Path(a.output).write_bytes(kvstore.safetensors_bytes(kv, ids, model=model.identity))
    print(f"{a.output}: {model.identity}, {len(ids)} tokens, {kv.dtype}, shape {list(kv.shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
