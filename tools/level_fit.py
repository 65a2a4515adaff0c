"""The pure functions of tools/calibrate_llama.py: where its windows lie in the calibration texts, and
the level-scale fits: a level's step scale from trials (scale -> top-1, ppl ratio, KL), aiming at an
error target (schemas/codec-profile.md, "Calibration")."""
from __future__ import annotations

import numpy as np

SCALE_RANGE = (1 / 64, 4.0)


def window_starts(lengths: dict[str, int], windows: int, span: int) -> list[tuple[str, int]]:
    """(text, first token) of each window: the windows take turns over the texts, so each text gives
    its share, consecutive spans from its start. Raises ValueError naming a text too short for them."""
    names = list(lengths)
    if not names or windows < 1:
        raise ValueError("calibration needs a text and a window")
    starts = [(names[w % len(names)], (w // len(names)) * span) for w in range(windows)]
    for name in names:
        need = sum(span for n, _ in starts if n == name)
        if lengths[name] < need:
            raise ValueError(f"{name} has {lengths[name]} tokens; its windows need {need}")
    return starts


def keeps_floor(s: dict, target: tuple[float, float]) -> bool:
    return s["top1"] >= target[0] and s["ppl_ratio"] <= target[1]


def error_fits(samples: dict) -> dict:
    """log(error) = a + b log(KL), least squares over every trial with a positive error: top-1
    disagreement and perplexity excess. Pooled over the levels: both depend on the KV's error, which
    KL measures smoothly, not on which level made it."""
    out = {}
    for key, err in (("top1", lambda s: 1 - s["top1"]), ("ppl", lambda s: s["ppl_ratio"] - 1)):
        pts = [(np.log(s["kl"]), np.log(err(s))) for runs in samples.values() for _, s in runs if err(s) > 0 and s["kl"] > 0]
        if len(pts) < 3:
            out[key] = (0.0, 1.0)  # too few errors to fit: error = KL, a safe guess for small KL
            continue
        x, y = np.array(pts).T
        b, a = np.polyfit(x, y, 1)
        out[key] = (float(a), float(max(b, 0.2)))
    return out


def kl_for(fit: tuple[float, float], err: float) -> float:
    a, b = fit
    return float(np.exp((np.log(err) - a) / b))


def scale_for_kl(runs: list, kl_target: float) -> float:
    """The scale whose KL is kl_target on this level's log-log line (KL ~ scale^2 while steps are fine).
    runs: [(scale, trial)]."""
    x = np.log([sc for sc, _ in runs])
    y = np.log([max(s["kl"], 1e-12) for _, s in runs])
    b, a = np.polyfit(x, y, 1) if len(set(x)) > 1 else (2.0, y[0] - 2 * x[0])
    b = max(b, 0.5)
    return float(np.clip(np.exp((np.log(kl_target) - a) / b), *SCALE_RANGE))
