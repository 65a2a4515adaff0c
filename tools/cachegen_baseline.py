"""CacheGen as a size/quality baseline for tools/bench_llama_quality.py.

A numpy RE-IMPLEMENTATION of the KV encoder published in CacheGen (Liu et al., "CacheGen: KV Cache
Compression and Streaming for Fast Large Language Model Serving", SIGCOMM'24), written from the paper
and from reading LMCache's CacheGen serializer (lmcache/storage_backend/serde/cachegen_*.py) for its
bin counts and grouping. It is NOT CacheGen's or LMCache's code, and it writes no bitstream: the
size is the ideal arithmetic-coding size, computed, never coded. What it does:

- The KV is cut into chunks of `chunk_tokens` (256, LMCache's CACHEGEN_GPU_MAX_TOKENS_PER_CHUNK and
  the chunk size the bench gives kvstore), each chunk into groups of `group_tokens` (10, the paper's
  group) contiguous tokens; the first token of each group is its anchor, kept in fp16.
- Every other token is coded as its delta to the anchor (the paper's change-based encoding; LMCache
  as shipped quantizes the values themselves: point "cachegen-lmcache", group_tokens=0). Each
  (layer, K/V, token) delta vector over all KV heads' channels is quantized uniformly and symmetrically as LMCache does: MAX = bins // 2 - 1,
  q = round(delta * MAX / max|delta|), q in [-MAX, MAX], one fp16 scale max|delta| per vector.
- Layer-grouped bins, fewer for deeper layers (LMCache's CacheGenConfig for models of 10 or more
  layers: keys 32 bins in layers 0-9 and 16 after, values 32 in layers 0-1 and 16 after; all 32 below
  10 layers). `POINTS` holds that default, one finer (bins doubled), one coarser (halved), and the
  default without anchors.
- Arithmetic coding with one symbol distribution per (layer, K/V, channel) per chunk: the size is the
  empirical entropy of each such model's symbols (sum of -log2 p over the chunk's symbols, no coder
  overhead, no stream lengths or termination: in CacheGen's favour).

Side information counted (documented costs):
- anchors: 2 bytes per element (fp16), scales: 2 bytes per (layer, K/V, non-anchor token);
- distributions: LMCache ships each chunk's CDF as int16, bins + 1 entries per (layer, K/V, channel):
  `tables="chunk"` counts 2 * (bins + 1) bytes per (layer, K/V, channel, chunk) (LMCache pads every
  row to the largest bins + 1: counted at each layer's own bins, in CacheGen's favour). `tables="shared"`
  counts none, as if the distributions were profiled offline and known to the decoder: a lower bound
  on CacheGen's size (the entropy is still the chunk's own, which no shared table beats).

tools/eval_quality.py --cachegen-baseline (the numpy oracle) is LMCache as
shipped, sized by one entropy over the whole context; it takes its bins and entropy from here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np


@dataclass(frozen=True)
class Point:
    """One operating point: bins of keys and values before / from the layer where they drop."""
    name: str
    key_bins: tuple[int, int]  # (layers < 10, layers >= 10)
    value_bins: tuple[int, int]  # (layers < 2, layers >= 2)
    group_tokens: int = 10  # 0: no anchors, the values themselves are quantized (LMCache as shipped)
    chunk_tokens: int = 256

    def bins(self, layers: int) -> np.ndarray:
        """[layers, 2] bins per (layer, K/V), LMCache's layer grouping."""
        out = np.empty((layers, 2), dtype=np.int64)
        if layers < 10:  # LMCache gives small models the finer bins everywhere
            out[:, 0], out[:, 1] = self.key_bins[0], self.value_bins[0]
            return out
        out[:, 0] = np.where(np.arange(layers) < 10, *self.key_bins)
        out[:, 1] = np.where(np.arange(layers) < 2, *self.value_bins)
        return out


# LMCache's default, the same grouping with bins doubled and halved (CacheGen streams a context at
# several such levels), and LMCache's default without anchors, as LMCache ships it. Quartered bins (8 / 4) measured KL 1.7 on SmolLM2 in llama.cpp: off any useful scale.
POINTS = {"cachegen-fine": Point("cachegen-fine", (64, 32), (64, 32)),
          "cachegen": Point("cachegen", (32, 16), (32, 16)),
          "cachegen-coarse": Point("cachegen-coarse", (16, 8), (16, 8)),
          "cachegen-lmcache": Point("cachegen-lmcache", (32, 16), (32, 16), group_tokens=0)}


class Encoded(NamedTuple):
    kv: np.ndarray  # decoded, same shape and dtype as the input
    nbytes: int  # ideal size with the side information `tables` asks for
    parts: dict  # bytes by kind: symbols, anchors, scales, tables (per-chunk int16 CDFs)


def entropy_bits(symbols: np.ndarray, alphabet: int) -> float:
    """Sum over the last-axis-independent models of -log2 p(symbol): `symbols` [models, n] in
    0..alphabet-1, one empirical distribution per row."""
    models, n = symbols.shape
    counts = np.bincount((np.arange(models)[:, None] * alphabet + symbols).ravel(),
                         minlength=models * alphabet).astype(np.float64)
    nz = counts[counts > 0]
    # Each row has n symbols: sum_s c_s * log2(n / c_s).
    return float((nz * (np.log2(n) - np.log2(nz))).sum()) if n else 0.0


def encode(kv: np.ndarray, point: Point | str = "cachegen", tables: str = "chunk") -> Encoded:
    """KV [layers, 2, tokens, kv_heads, head_dim] -> its CacheGen-decoded copy and ideal size."""
    if isinstance(point, str):
        point = POINTS[point]
    if tables not in ("chunk", "shared"):
        raise ValueError(f"tables must be chunk or shared, not {tables!r}")
    L, two, T, H, D = kv.shape
    assert two == 2, "KV must be [layers, 2, tokens, kv_heads, head_dim]"
    C = H * D
    bins = point.bins(L)
    MAX = (bins // 2 - 1).astype(np.float32)[:, :, None, None]  # [L, 2, 1, 1]
    if (MAX < 1).any():
        raise ValueError(f"{point.name}: every layer needs at least 4 bins")
    alphabet = int(2 * MAX.max() + 1)
    x_all = kv.reshape(L, 2, T, C)
    out = np.empty((L, 2, T, C), dtype=kv.dtype)
    parts = {"symbols": 0.0, "anchors": 0, "scales": 0, "tables": 0}
    for s in range(0, T, point.chunk_tokens):
        x = x_all[:, :, s:s + point.chunk_tokens].astype(np.float32)
        n = x.shape[2]
        idx = np.arange(n)
        if point.group_tokens:
            is_anchor = idx % point.group_tokens == 0
            anchors = x[:, :, idx - idx % point.group_tokens].astype(np.float16).astype(np.float32)
        else:
            is_anchor, anchors = np.zeros(n, dtype=bool), np.zeros_like(x)
        delta = x - anchors
        scale = np.abs(delta).max(axis=-1, keepdims=True).astype(np.float16).astype(np.float32)
        safe = np.where(scale == 0, 1, scale)
        q = np.clip(np.round(delta * (MAX / safe)), -MAX, MAX)
        q[:, :, is_anchor] = 0
        out[:, :, s:s + n] = (anchors + q * scale / MAX).astype(kv.dtype)
        # One model per (layer, K/V, channel): rows = models, columns = the chunk's non-anchor tokens.
        sym = (q[:, :, ~is_anchor] + alphabet // 2).astype(np.int64)  # [L, 2, n', C]
        parts["symbols"] += entropy_bits(sym.transpose(0, 1, 3, 2).reshape(L * 2 * C, -1), alphabet) / 8
        groups = int(is_anchor.sum())
        parts["anchors"] += L * 2 * groups * C * 2
        parts["scales"] += L * 2 * (n - groups) * 2
        parts["tables"] += int((bins + 1).sum()) * C * 2
    parts["symbols"] = int(np.ceil(parts["symbols"]))
    counted = ("symbols", "anchors", "scales") + (("tables",) if tables == "chunk" else ())
    return Encoded(out.reshape(kv.shape), sum(parts[k] for k in counted), parts)
