"""Tests of the calibration and quality tools that need no forward pass (run: python -m pytest tools/tests -q)."""
import json
import os
import sys

TOOLS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TOOLS)

import kvmodel  # noqa: E402,F401  (first: picks the BLAS thread count before numpy loads)
import numpy as np  # noqa: E402

import eval_quality  # noqa: E402
from profile_io import FORMAT, VERSION, profile_json  # noqa: E402

PROFILES = os.path.join(os.path.dirname(TOOLS), "profiles")


def test_shipped_profiles_are_in_the_layout_the_calibrator_writes():
    names = sorted(f for f in os.listdir(PROFILES) if f.endswith(".json"))
    assert names
    for name in names:
        text = open(os.path.join(PROFILES, name), encoding="utf-8").read()
        p = json.loads(text)
        assert profile_json(p) == text, name
        assert p["format"] == FORMAT and p["version"] == VERSION
        assert p["source"].startswith("tools/calibrate_llama.py"), name  # the one calibrator
        L, H, D = p["shape"]["layers"], p["shape"]["kv_heads"], p["shape"]["head_dim"]
        assert len(p["group_step_weights"]) == L and all(len(w) == 2 for w in p["group_step_weights"])
        assert len(p["key_pair_energy"]) == L and all(len(r) == H * D // 2 for r in p["key_pair_energy"])
        assert len(p["level_step_scales"]) == 4


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
