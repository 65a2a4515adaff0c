"""Tests of the Python KV tools (run: python -m pytest tools/tests -q)."""
import json
import os
import subprocess
import sys

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

import kvmodel  # noqa: E402  (first: picks the BLAS thread count before numpy loads)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import eval_quality  # noqa: E402
import st_io  # noqa: E402

TEXTS = os.path.join(TOOLS, "texts")
FIXTURES = os.path.join(os.path.dirname(TOOLS), "Tests", "Fixtures")
MODERN = os.path.join(TEXTS, "modern_bread_essay.txt")
EMMA = os.path.join(TEXTS, "emma_ch1.txt")


@pytest.fixture(scope="module")
def model():
    return kvmodel.load_model()


@pytest.fixture(scope="module")
def modern_tokens(model):
    with open(MODERN, encoding="utf-8") as f:
        return model.tokenize(f.read())


# ----------------------------------------------------------------- tokenizer / texts

def test_tokenizer_round_trip(model):
    samples = ["Hello, world!", "It is a truth universally acknowledged, that a single man",
               "Numbers 1234567 and  double  spaces\n\n\tand tabs, café, naïve, 東京 🙂",
               "<|im_start|>user\nhi<|im_end|>"]
    for s in samples:
        ids = model.tokenize(s)
        assert ids and all(0 <= i < model.vocab for i in ids)
        assert model.detokenize(ids) == s
    # digits are split one by one (SmolLM2 pre-tokenizer)
    assert len(model.tokenize("1234")) == 4
    assert model.tokenize("<|im_start|>") == [1]


def test_texts_long_enough_and_round_trip(model):
    lens = {}
    for name in os.listdir(TEXTS):
        if name.endswith(".txt"):
            with open(os.path.join(TEXTS, name), encoding="utf-8") as f:
                t = f.read()
            ids = model.tokenize(t)
            assert model.detokenize(ids) == t, name
            lens[name] = len(ids)
    assert sum(1 for n in lens.values() if n >= 1400) >= 3, lens
    assert max(lens.values()) >= 4400, lens


def test_config_from_gguf(model):
    assert (model.n_layers, model.hidden, model.n_heads, model.n_kv_heads, model.head_dim) == \
        (30, 576, 9, 3, 64)
    rc = kvmodel.rope_config()
    assert rc["theta"] == 100000.0 and rc["rotary_dim"] == 64 and rc["pairs"] == "adjacent"


# ----------------------------------------------------------------- forward pass

def test_kv_shape_and_logits(model, modern_tokens):
    logits, kv = model.forward(modern_tokens[:16])
    assert logits.shape == (16, model.vocab) and logits.dtype == np.float32
    assert kv.shape == (30, 2, 16, 3, 64) and kv.dtype == np.float32
    assert np.isfinite(kv).all() and np.isfinite(logits).all()
    _, kv2 = model.forward(modern_tokens[:16], logits=False)
    assert np.array_equal(kv, kv2)


def test_incremental_equals_full(model, modern_tokens):
    toks = modern_tokens[:48]
    full_logits, full_kv = model.forward(toks)
    l1, kv1 = model.forward(toks[:29])
    l2, kv2 = model.forward(toks[29:], past_kv=kv1)
    inc_kv = np.concatenate([kv1, kv2], axis=2)
    assert np.abs(inc_kv - full_kv).max() < 1e-3
    assert np.abs(np.concatenate([l1, l2]) - full_logits).max() < 5e-3
    # block-wise extraction equals one pass
    blk = model.extract_kv(toks, block=16)
    assert np.abs(blk - full_kv).max() < 1e-3
    # one token at a time (decode), last logits
    lg, kv3 = model.forward(toks[47:], past_kv=full_kv[:, :, :47], logits="last")
    assert np.abs(lg[0] - full_logits[-1]).max() < 5e-3
    assert np.abs(kv3[:, :, 0] - full_kv[:, :, 47]).max() < 1e-3


def test_rope_position_shift_invariance(model, modern_tokens):
    # RoPE attention depends only on relative positions: shifting every position
    # keeps the logits, but changes the stored (post-RoPE) keys and not the values.
    toks = modern_tokens[:24]
    l0, kv0 = model.forward(toks)
    l1, kv1 = model.forward(toks, start_pos=37)
    assert np.abs(l0 - l1).max() < 5e-3
    assert np.abs(kv0[:, 1] - kv1[:, 1]).max() < 1e-3
    assert np.abs(kv0[:, 0] - kv1[:, 0]).max() > 0.1


def test_rope_adjacent_pairs_key_rotation(model, modern_tokens):
    # keys of a token at position p must equal the position-0 keys rotated pairwise
    # (d=2i, 2i+1) by p * theta^(-2i/64).
    tok = modern_tokens[5:6]
    _, k0 = model.forward(tok, start_pos=0)
    p = 11
    _, kp = model.forward(tok, start_pos=p)
    k0 = k0[0, 0, 0]  # layer 0 keys [3, 64]: layer 0 input is only the embedding
    kp = kp[0, 0, 0]
    i = np.arange(32)
    ang = p * 100000.0 ** (-2 * i / 64)
    c, s = np.cos(ang), np.sin(ang)
    x0, x1 = k0[:, 0::2], k0[:, 1::2]
    want = np.empty_like(k0)
    want[:, 0::2] = x0 * c - x1 * s
    want[:, 1::2] = x0 * s + x1 * c
    assert np.abs(want - kp).max() < 1e-3


def test_perplexity_sane_and_exact_agreement(model, modern_tokens):
    ctx, cont = modern_tokens[:256], modern_tokens[256:384]
    kv = model.extract_kv(ctx)
    ref = kvmodel.continuation_quality(kv, cont, model=model)
    assert 2.0 < ref["ppl"] < 30.0, ref["ppl"]
    again = kvmodel.continuation_quality(kv.copy(), cont, ref_logits=ref["logits"], model=model)
    assert again["top1"] == 1.0
    assert abs(again["ppl"] / ref["ppl"] - 1) < 1e-5
    assert again["kl"] < 1e-6
    # a wrong RoPE convention (rotate-half) must be far worse: proves "adjacent"
    orig = model._rope

    def neox(x, cos, sin):
        h = model.rope_dim // 2
        a, b = x[..., :h], x[..., h:2 * h]
        return np.concatenate([a * cos[:, None] - b * sin[:, None],
                               a * sin[:, None] + b * cos[:, None]], -1)
    try:
        model._rope = neox
        lg, _ = model.forward(modern_tokens[:192])
    finally:
        model._rope = orig
    lg_ok, _ = model.forward(modern_tokens[:192])
    assert kvmodel.perplexity(lg, modern_tokens[:192]) > 3 * kvmodel.perplexity(
        lg_ok, modern_tokens[:192])


def test_metrics():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(10, 50)).astype(np.float32)
    assert kvmodel.top1_agreement(a, a) == 1.0
    b = a.copy()
    b[0] = -b[0]
    assert kvmodel.top1_agreement(a, b) == 0.9
    assert kvmodel.mean_kl(a, a) == pytest.approx(0.0, abs=1e-6)
    assert kvmodel.mean_kl(a, b) > 0
    # perplexity: uniform logits -> vocab size
    assert kvmodel.perplexity(np.zeros((5, 50), np.float32), [1, 2, 3, 4, 5]) == \
        pytest.approx(50.0, rel=1e-5)


# ----------------------------------------------------------------- safetensors

@pytest.mark.parametrize("dt", ["F16", "BF16", "F32", "I32", "I64"])
def test_st_io_round_trip(tmp_path, dt):
    rng = np.random.default_rng(1)
    shape = (3, 2, 5, 7)
    if dt.startswith("I"):
        a = rng.integers(-2**31 if dt == "I32" else -2**40, 2**31 - 1, size=shape)
        a = a.astype(np.int32 if dt == "I32" else np.int64)
        src = st_io.Tensor(a, dt)
    elif dt == "BF16":
        a = st_io.bf16_bits_to_f32(st_io.f32_to_bf16_bits(rng.normal(size=shape) * 10))
        src = st_io.Tensor(a, "BF16")
    else:
        a = (rng.normal(size=shape) * 10).astype(np.float16 if dt == "F16" else np.float32)
        src = a
    p = tmp_path / f"t_{dt}.safetensors"
    st_io.save(p, {"x": src, "scalar": np.array(7, np.int32)}, {"k": "v", "n": 3})
    raw = p.read_bytes()
    hlen = int.from_bytes(raw[:8], "little")
    assert hlen % 8 == 0 and json.loads(raw[8:8 + hlen])["x"]["dtype"] == dt
    assert st_io.dtypes(p)["x"] == dt
    t, meta = st_io.load(p)
    assert meta == {"k": "v", "n": "3"}
    assert t["x"].shape == shape and np.array_equal(t["x"], a)
    assert t["scalar"].shape == () and int(t["scalar"]) == 7
    try:  # cross-check with the reference implementation when available
        from safetensors.numpy import load_file
    except ImportError:
        return
    if dt != "BF16":
        assert np.array_equal(load_file(str(p))["x"], a)


def test_bf16_rounding():
    x = np.array([1.0, 1.00390625, 1.005859375, -2.5, 3.0e38, 0.0, np.inf], np.float32)
    bits = st_io.f32_to_bf16_bits(x)
    back = st_io.bf16_bits_to_f32(bits)
    # 1+2^-8 is a tie -> even (1.0); 1+1.5*2^-8 rounds up to 1+2^-7
    assert back.tolist()[:4] == [1.0, 1.0, 1.0078125, -2.5]
    assert np.isinf(back[6]) and back[5] == 0.0
    assert np.isnan(st_io.bf16_bits_to_f32(st_io.f32_to_bf16_bits(np.array([np.nan], np.float32))))[0]


def test_st_io_rejects_bad_files(tmp_path):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(b"\x01\x00")
    with pytest.raises(ValueError):
        st_io.load(p)
    hdr = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}).encode()
    hdr += b" " * (-len(hdr) % 8)
    p.write_bytes(len(hdr).to_bytes(8, "little") + hdr + b"\0" * 8)
    with pytest.raises(ValueError):
        st_io.load(p)


# ----------------------------------------------------------------- quality evaluation

def test_eval_int8_and_cachegen_close_but_not_exact(model, modern_tokens):
    n_ctx = 192
    kv = model.extract_kv(modern_tokens[:n_ctx])
    kv_int8, size8 = eval_quality.int8_per_token(kv)
    assert 0 < np.abs(kv_int8 - kv).max() < 0.05 * np.abs(kv).max()
    res = eval_quality.evaluate(modern_tokens, n_ctx, [kv_int8, kv], n_cont=96, exact_kv=kv,
                                baselines=["cachegen"], model=model)
    r8, rx, cg = res["results"]["decoded"], res["results"]["decoded_2"], res["results"]["cachegen"]
    assert rx["top1"] == 1.0 and rx["ppl_ratio"] == pytest.approx(1.0, abs=1e-6)
    assert r8["top1"] < 1.0 or r8["ppl_ratio"] != 1.0 or r8["kl"] > 0
    assert r8["top1"] >= 0.95 and abs(r8["ppl_ratio"] - 1) < 0.05
    assert cg["top1"] >= 0.6 and abs(cg["ppl_ratio"] - 1) < 0.5
    assert cg["kl"] > r8["kl"]
    s = cg["size"]
    assert 0.05 < s["ratio_vs_fp16"] < 0.35 and s["scale_bytes"] == 30 * 2 * n_ctx * 2
    assert s["lmcache_chunked_bytes"] > s["bytes"]
    assert size8["ratio_vs_fp16"] == pytest.approx((192 + 2) / 384)


def test_cachegen_quantizer_matches_lmcache_rule():
    rng = np.random.default_rng(3)
    kv = rng.normal(size=(30, 2, 8, 3, 64)).astype(np.float32)
    deq, size = eval_quality.cachegen_quantize(kv)
    kb, vb = eval_quality.cachegen_bins(30)
    assert kb[:10].tolist() == [32] * 10 and kb[10:].tolist() == [16] * 20
    assert vb[:2].tolist() == [32] * 2 and vb[2:].tolist() == [16] * 28
    # layer 20 keys: 16 bins -> 15 levels in [-7, 7] * amax/7 per token
    x = kv[20, 0].reshape(8, 192).astype(np.float16).astype(np.float32)
    mx = np.abs(x).max(1, keepdims=True)
    levels = deq[20, 0].reshape(8, 192) / mx * 7
    assert np.allclose(levels, np.rint(levels), atol=1e-4)
    assert np.abs(levels).max() == pytest.approx(7.0)
    assert np.abs(deq[20, 0].reshape(8, 192) - x).max() <= (mx / 14).max() + 1e-6


def _run(args, **kw):
    return subprocess.run([sys.executable] + args, capture_output=True, text=True, **kw)


def test_cli_extract_and_eval(tmp_path):
    out = tmp_path / "ctx.safetensors"
    r = _run([os.path.join(TOOLS, "extract_kv.py"), MODERN, str(out), "--tokens", "96",
              "--dtype", "bf16"])
    assert r.returncode == 0, r.stderr
    assert "kv [30, 2, 96, 3, 64]" in r.stdout
    t, meta = st_io.load(out)
    assert st_io.dtypes(out) == {"kv": "BF16", "tokens": "I32"}
    assert meta["rope_pairs"] == "adjacent" and meta["rope_theta"] == "100000.0"
    assert meta["model"] == "SmolLM2-135M-Instruct" and meta["rope_dim"] == "64"
    r = _run([os.path.join(TOOLS, "eval_quality.py"), MODERN, str(out), "--continuation", "48",
              "--json", "--compressed-size", "12345"])
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    d = res["results"]["decoded"]
    assert res["n_ctx"] == 96 and res["n_pred"] == 47
    assert d["top1"] >= 0.95 and abs(d["ppl_ratio"] - 1) < 0.02
    assert d["size"]["bytes"] == 12345
    # wrong text -> clear error
    r = _run([os.path.join(TOOLS, "eval_quality.py"), EMMA, str(out), "--continuation", "48"])
    assert r.returncode != 0 and "differ" in r.stderr
    # text too short -> clear error
    short = tmp_path / "short.txt"
    short.write_text("Just a few words.")
    r = _run([os.path.join(TOOLS, "extract_kv.py"), str(short), str(tmp_path / "x.st"),
              "--tokens", "64"])
    assert r.returncode != 0 and "only" in r.stderr and "tokens" in r.stderr


@pytest.mark.skipif(not os.path.exists(os.path.join(FIXTURES, "smollm2_ctx96_f16.safetensors")),
                    reason="fixtures not generated")
def test_fixtures_match_model(model):
    with open(EMMA, encoding="utf-8") as f:
        toks = model.tokenize(f.read())
    with open(os.path.join(FIXTURES, "smollm2_ctx96_f16.tokens.json")) as f:
        assert json.load(f) == toks[:200]
    kv = model.extract_kv(toks[:96])
    for name, n, tol in [("smollm2_ctx96_f16", 96, 2e-2), ("smollm2_ctx40_bf16", 40, 0.1),
                         ("smollm2_ctx40_f32", 40, 2e-3)]:
        t, meta = st_io.load(os.path.join(FIXTURES, name + ".safetensors"))
        assert t["tokens"].tolist() == toks[:n]
        assert t["kv"].shape == (30, 2, n, 3, 64)
        assert np.abs(t["kv"] - kv[:, :, :n]).max() < tol, name
        assert meta["rope_pairs"] == "adjacent"


def test_query_hook_and_key_channel_calibration(model, modern_tokens):
    import calibrate_key_channels as ckc
    seen = []
    _, kv = model.forward(modern_tokens[:16], logits=False, on_query=lambda l, q: seen.append((l, q.shape)))
    assert [l for l, _ in seen] == list(range(model.n_layers))
    assert all(s == (16, model.n_heads, model.head_dim) for _, s in seen)
    e = ckc.pair_energy(model, modern_tokens[:32])
    assert e.shape == (model.n_layers, model.n_kv_heads, model.head_dim // 2) and (e > 0).all()
    from profile_io import quarter_octaves
    codes = quarter_octaves(e)
    # quarter-octaves relative to each layer's mean: a channel 4x the mean is +8, the order is kept
    flat = e.reshape(model.n_layers, -1)
    assert codes.shape == flat.shape
    for layer in range(model.n_layers):
        order = np.argsort(flat[layer])
        assert (np.diff(codes[layer][order]) >= 0).all()
    assert (quarter_octaves(np.array([[[1.0, 1.0, 4.0, 2.0]]])) == [[-4, -4, 4, 0]]).all()
