"""The CacheGen re-implementation (tools/cachegen_baseline.py) on real SmolLM2 KV, and the size-vs-KL
plot (tools/plot_size_kl.py) on a bench_llama_quality-shaped JSON."""
from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOOLS))
import cachegen_baseline as cg  # noqa: E402
import plot_size_kl  # noqa: E402
import st_io  # noqa: E402

FIXTURE = TOOLS.parent / "Tests" / "Fixtures" / "smollm2_ctx96_f16.safetensors"


@pytest.fixture(scope="module")
def kv():
    return st_io.load(FIXTURE)[0]["kv"]  # [30, 2, 96, 3, 64] fp16


def test_entropy_of_known_distributions():
    rows = np.array([[0] * 8, [0, 1] * 4, [0, 1, 2, 3] * 2])
    assert cg.entropy_bits(rows, 4) == pytest.approx(0 + 8 * 1 + 8 * 2)


def test_cachegen_decodes_within_its_steps_and_counts_every_part(kv):
    point = cg.POINTS["cachegen"]
    e = cg.encode(kv, point)
    assert e.kv.shape == kv.shape and e.kv.dtype == kv.dtype
    x, y = kv.astype(np.float32), e.kv.astype(np.float32)
    assert np.array_equal(y[:, :, ::point.group_tokens], x[:, :, ::point.group_tokens])  # fp16 anchors, exact
    # Each delta lands within half a step (max|delta| / MAX per layer, K/V, token) plus fp16 rounding.
    L, _, T, H, D = kv.shape
    anchors = x[:, :, (np.arange(T) // 10) * 10]
    step = np.abs(x - anchors).reshape(L, 2, T, -1).max(-1) / (point.bins(L) // 2 - 1)[:, :, None]
    err = np.abs(y - x).reshape(L, 2, T, -1).max(-1)
    assert (err <= step * 0.51 + np.abs(x).reshape(L, 2, T, -1).max(-1) * 2e-3 + 1e-6).all()
    assert not np.array_equal(y, x)
    # The size: anchors (10 per 96 tokens) in fp16, a scale per other vector, int16 CDF tables, symbols.
    C = H * D
    assert e.parts["anchors"] == L * 2 * 10 * C * 2
    assert e.parts["scales"] == L * 2 * 86 * 2
    assert e.parts["tables"] == int((point.bins(L) + 1).sum()) * C * 2
    assert e.nbytes == sum(e.parts.values())
    assert cg.encode(kv, point, tables="shared").nbytes == e.nbytes - e.parts["tables"]
    # Symbols cost less than their fixed-width bits (log2 of 31 or 15 levels).
    assert 0 < e.parts["symbols"] < L * 2 * 86 * C * np.log2(31) / 8


def test_coarser_points_are_smaller_and_worse(kv):
    out = [cg.encode(kv, p) for p in ("cachegen-fine", "cachegen", "cachegen-coarse")]
    errs = [float(np.square(e.kv.astype(np.float32) - kv.astype(np.float32)).mean()) for e in out]
    assert out[0].nbytes > out[1].nbytes > out[2].nbytes
    assert errs[0] < errs[1] < errs[2]


def test_without_anchors_it_is_the_lmcache_quantizer_of_eval_quality(kv):
    import eval_quality  # the numpy-oracle tables' CacheGen (LMCache as shipped)
    e = cg.encode(kv, "cachegen-lmcache")
    deq, size = eval_quality.cachegen_quantize(kv)
    assert np.allclose(e.kv.astype(np.float32), deq, rtol=2e-3, atol=1e-6)
    assert e.parts["anchors"] == 0 and e.parts["scales"] == size["scale_bytes"]
    symbols = size["lmcache_chunked_bytes"] - size["scale_bytes"] - size["lmcache_cdf_bytes"]
    assert abs(e.parts["symbols"] - symbols) <= 2  # rounded once here, per chunk there
    # Deltas to anchors drop the channels that stay large from the scale: finer steps, less error.
    mse = lambda x: float(np.square(x.astype(np.float32) - kv.astype(np.float32)).mean())
    assert mse(cg.encode(kv, "cachegen").kv) < mse(e.kv) / 2


def test_bins_follow_lmcache_layer_grouping():
    b = cg.POINTS["cachegen"].bins(30)
    assert b[:10, 0].tolist() == [32] * 10 and b[10:, 0].tolist() == [16] * 20
    assert b[:2, 1].tolist() == [32] * 2 and b[2:, 1].tolist() == [16] * 28
    assert (cg.POINTS["cachegen"].bins(6) == 32).all()


def bench_json(model: str, profile, scale: float) -> dict:
    """The shape tools/bench_llama_quality.py --json writes (summary part only)."""
    s = lambda kl, c, **kw: {"top1": 0.9, "kl": kl * scale, "ppl_ratio": 1.01, "compression": c, **kw}
    return {"args": {"texts": "emma_ch1.txt", "profile": profile}, "model": model,
            "summary": {"floor": {"top1": 0.94, "kl": 0.003 * scale, "ppl_ratio": 1.005},
                        "levels": {"0": s(0, 1.2), "1": s(0.004, 4.1), "2": s(0.009, 6.2), "3": s(0.02, 8.7),
                                   "4": s(0.06, 11.5)},
                        "int8/token": s(0.0033, 1.94), "q8_0": s(0.0031, 1.88), "q4_0": s(0.03, 3.56),
                        "cachegen": s(0.016, 2.8, compression_shared_tables=3.6)},
            "per_text": {}, "failures": []}


def texts_of(svg: Path) -> list[str]:
    return [t.text for t in ET.parse(svg).iter("{http://www.w3.org/2000/svg}text")]


def test_plot_draws_one_svg_per_model_with_every_label(tmp_path):
    files = []
    for i, (model, profile) in enumerate([("llama.cpp/SmolLM2@sha256:ab", None),
                                          ("llama.cpp/SmolLM2@sha256:ab", "profiles/SmolLM2-135M-Instruct-Q4_1.json"),
                                          ("llama.cpp/gemma-3-270m@sha256:cd", None)]):
        f = tmp_path / f"run{i}.json"
        f.write_text(json.dumps(bench_json(model, profile, 1 + i)))
        files.append(str(f))
    plot_size_kl.main([*files, "-o", str(tmp_path / "kl-{model}.svg")])
    smol, gemma = tmp_path / "kl-SmolLM2.svg", tmp_path / "kl-gemma-3-270m.svg"
    labels = texts_of(smol)
    for want in ("L1", "L2", "L3", "L4", "int8/token", "q8_0", "q4_0", "cachegen", "±1-ulp floor",
                 "kvstore (default profile)", "kvstore (SmolLM2-135M-Instruct-Q4_1 profile)"):
        assert want in labels, want
    assert "L0" not in labels  # lossless: no KL to draw on a log axis
    assert "kvstore (SmolLM2-135M-Instruct-Q4_1 profile)" not in texts_of(gemma) and "cachegen" in texts_of(gemma)
    # Two kvstore lines (one per profile) on SmolLM2's plot, the floor a dashed line.
    root = ET.parse(smol).getroot()
    assert len(root.findall("{http://www.w3.org/2000/svg}polyline")) == 2
    assert any(e.get("stroke-dasharray") for e in root.iter("{http://www.w3.org/2000/svg}line"))


def test_plot_needs_model_placeholder_for_several_models(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(bench_json("m1", None, 1)))
    b.write_text(json.dumps(bench_json("m2", None, 1)))
    with pytest.raises(SystemExit):
        plot_size_kl.main([str(a), str(b), "-o", str(tmp_path / "one.svg")])
