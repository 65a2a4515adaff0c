"""Codec profile files (schemas/codec-profile.md) as the calibration tools write them."""
from __future__ import annotations

import json

import numpy as np

FORMAT, VERSION = "kvstore-codec-profile", 1


def profile_json(p: dict) -> str:
    """Sorted keys, one layer per line (the layout of profiles/*.json)."""
    out = ["{"]
    keys = sorted(p)
    for i, k in enumerate(keys):
        comma = "," if i < len(keys) - 1 else ""
        v = p[k]
        if k in ("group_step_weights", "key_pair_energy") and v is not None:
            rows = ",\n".join("    " + json.dumps(r) for r in v)
            out.append(f'  "{k}": [\n{rows}\n  ]{comma}')
        else:
            out.append(f'  "{k}": {json.dumps(v)}{comma}')
    out.append("}")
    return "\n".join(out) + "\n"


def quarter_octaves(energy) -> np.ndarray:
    """`key_pair_energy` rows: per layer round(4 log2(w / mean w)) of [layers, ...] energies, in Int8."""
    L = energy.shape[0]
    flat = energy.reshape(L, -1)
    rel = flat / flat.mean(axis=1, keepdims=True)
    return np.clip(np.round(4 * np.log2(np.maximum(rel, 1e-12))), -127, 127).astype(int)
