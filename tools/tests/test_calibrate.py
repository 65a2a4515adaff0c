"""Tests of the calibration tools that need no forward pass (run: python -m pytest tools/tests -q)."""
import json
import os
import sys

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

import kvmodel  # noqa: E402,F401  (first: picks the BLAS thread count before numpy loads)
import numpy as np  # noqa: E402

import calibrate  # noqa: E402
import eval_quality  # noqa: E402

PROFILE = os.path.join(os.path.dirname(TOOLS), "profiles", "SmolLM2-135M-Instruct.json")


def test_shipped_profile_is_in_the_layout_calibrate_writes():
    text = open(PROFILE, encoding="utf-8").read()
    p = json.loads(text)
    assert calibrate.profile_json(p) == text
    assert p["format"] == calibrate.FORMAT and p["version"] == calibrate.VERSION
    L, H, D = p["shape"]["layers"], p["shape"]["kv_heads"], p["shape"]["head_dim"]
    assert len(p["group_step_weights"]) == L and all(len(w) == 2 for w in p["group_step_weights"])
    assert len(p["key_pair_energy"]) == L and all(len(r) == H * D // 2 for r in p["key_pair_energy"])


def test_probe_quantiser_is_the_codecs_base_step():
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(200, 3, 64)) * rng.uniform(0.1, 3, size=(1, 3, 64)) + 5).astype(np.float32)
    for alpha in (0.2, 1.0):
        q = calibrate.quantise_group(x, alpha)
        flat = x.reshape(200, -1).astype(np.float64)
        step = alpha * np.sqrt(flat.var(0).mean())
        err = np.abs(q.reshape(200, -1) - flat)
        assert err.max() <= step / 2 * 1.0001
        assert err.max() > step / 4  # it really quantises
    const = np.full((10, 1, 4), 2.5, np.float32)
    assert np.array_equal(calibrate.quantise_group(const, 0.5), const)


def test_ulp_noise_moves_every_value_by_one_fp16_ulp():
    rng = np.random.default_rng(1)
    kv = rng.normal(size=(2, 2, 16, 1, 8)).astype(np.float16).astype(np.float32)
    noisy, size = eval_quality.ulp_noise(kv)
    h, n = kv.astype(np.float16), noisy.astype(np.float16)
    assert np.array_equal(n.astype(np.float32), noisy)
    up, down = np.nextafter(h, np.float16(np.inf)), np.nextafter(h, np.float16(-np.inf))
    assert np.all((n == up) | (n == down))
    assert 0.3 < np.mean(n == up) < 0.7
    assert size["ratio_vs_fp16"] == 1.0
