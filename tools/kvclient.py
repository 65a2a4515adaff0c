#!/usr/bin/env python3
"""Python client of `kvstore serve` (stdlib urllib + numpy; libzstd through ctypes).

usage: kvclient.py URL lookup TOKENS.json [--token T]
       kvclient.py URL stream TOKENS.json [--slo-ms 1000] [--level 0] [--token T] [-o OUT.npy]
       kvclient.py URL put CONTEXT.safetensors [--token T]

TOKENS.json is a JSON array of token ids (or a safetensors file with a `tokens` tensor is not
supported here: pass JSON). Frames are read as they arrive (schemas/stream-frames.md); each
chunk's ChunkContainer is decoded to a numpy array [layers, 2, tokens, kv_heads, head_dim].
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import struct
import sys
import time
import urllib.error
import urllib.request

import numpy as np

FRAME_MAGIC = b"KVF1"
FRAME_HEADER = struct.Struct("<4sBBHIIIQI")  # magic kind level reserved index start end length reserved
CHUNK_HEADER = struct.Struct("<4sHHBBBBIIIIIQQ")  # 48-byte KVCK container header
KIND_HEADER, KIND_CHUNK, KIND_RECOMPUTE, KIND_END, KIND_ERROR = range(5)
MAX_PAYLOAD = 1 << 30
DTYPES = {1: np.dtype("<f2"), 2: np.dtype("<u2"), 3: np.dtype("<f4")}  # bf16 kept as raw bits
CODEC_RAW, CODEC_BYTEPLANE_ZSTD = 0, 1


class KVClientError(Exception):
    pass


def _zstd():
    path = ctypes.util.find_library("zstd") or "libzstd.so.1"
    lib = ctypes.CDLL(path)
    lib.ZSTD_decompress.restype = ctypes.c_size_t
    lib.ZSTD_decompress.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t]
    lib.ZSTD_isError.restype = ctypes.c_uint
    lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
    return lib


_ZSTD = None


def zstd_decompress(data: bytes, size: int) -> bytes:
    global _ZSTD
    if _ZSTD is None:
        _ZSTD = _zstd()
    out = ctypes.create_string_buffer(size)
    n = _ZSTD.ZSTD_decompress(out, size, data, len(data))
    if _ZSTD.ZSTD_isError(n) or n != size:
        raise KVClientError(f"zstd: could not decompress {len(data)} bytes into {size}")
    return out.raw


def decode_chunk(container: bytes) -> np.ndarray:
    """A ChunkContainer (lossless codecs) → array [layers, 2, tokens, kv_heads, head_dim]."""
    if len(container) < CHUNK_HEADER.size:
        raise KVClientError("chunk container shorter than its header")
    (magic, _version, hsize, codec, level, dcode, _pad, layers, heads, dim, tokens, _r, plen, _ck) = \
        CHUNK_HEADER.unpack_from(container)
    if magic != b"KVCK" or hsize != CHUNK_HEADER.size:
        raise KVClientError("not a kvstore chunk container")
    if plen != len(container) - hsize:
        raise KVClientError(f"container payload is {len(container) - hsize} bytes, header says {plen}")
    dt = DTYPES.get(dcode)
    if dt is None:
        raise KVClientError(f"unknown dtype code {dcode}")
    n = layers * 2 * tokens * heads * dim
    raw_size = n * dt.itemsize
    payload = container[hsize:]
    if codec == CODEC_RAW:
        raw = payload
    elif codec == CODEC_BYTEPLANE_ZSTD:
        planes = np.frombuffer(zstd_decompress(payload, raw_size), dtype=np.uint8)
        raw = planes.reshape(dt.itemsize, n).T.copy().tobytes()  # byte planes → interleaved
    else:
        raise KVClientError(f"codec {codec} (level {level}) is lossy or unknown; this client decodes lossless chunks")
    return np.frombuffer(raw, dtype=dt).reshape(layers, 2, tokens, heads, dim)


def _request(url, path, body=b"", content_type="application/json", token=None, timeout=60):
    req = urllib.request.Request(url.rstrip("/") + path, data=body, method="POST")
    req.add_header("Content-Type", content_type)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("error", "")
        except Exception:  # noqa: BLE001 - any unreadable error body
            msg = ""
        raise KVClientError(f"server answered {e.code}: {msg}") from None


def put(url, safetensors_bytes: bytes, token=None, model=None) -> dict:
    q = f"?model={model}" if model else ""
    with _request(url, "/v1/contexts" + q, safetensors_bytes, "application/octet-stream", token) as r:
        return json.loads(r.read())


def lookup(url, tokens, token=None) -> dict:
    body = json.dumps({"tokens": [int(t) for t in tokens]}).encode()
    with _request(url, "/v1/lookup", body, token=token) as r:
        return json.loads(r.read())


def _read_exact(resp, n):
    buf = bytearray()
    while len(buf) < n:
        piece = resp.read(n - len(buf))
        if not piece:
            raise KVClientError(f"stream cut off: needed {n} bytes, got {len(buf)}")
        buf += piece
    return bytes(buf)


def iter_frames(resp):
    """Yields (kind, level, index, (start, end), payload) as frames arrive."""
    while True:
        head = _read_exact(resp, FRAME_HEADER.size)
        magic, kind, level, _r, index, start, end, length, _r2 = FRAME_HEADER.unpack(head)
        if magic != FRAME_MAGIC:
            raise KVClientError("bad frame magic")
        if length > MAX_PAYLOAD or start > end:
            raise KVClientError(f"bad frame header (length {length}, tokens {start}..{end})")
        payload = _read_exact(resp, length)
        yield kind, level, index, (start, end), payload
        if kind in (KIND_END, KIND_ERROR):
            return


def stream(url, tokens, slo_ms=1000, level=None, token=None):
    """Streams the longest stored prefix. Returns a dict with header, chunks (each with `kv`
    or None for recompute), summary and timings; None on a miss."""
    q = f"?slo_ms={slo_ms}" + (f"&level={level}" if level is not None else "")
    body = json.dumps({"tokens": [int(t) for t in tokens]}).encode()
    t0 = time.monotonic()
    try:
        resp = _request(url, "/v1/stream" + q, body, token=token)
    except KVClientError as e:
        if str(e).startswith("server answered 404"):
            return None
        raise
    header, summary, chunks = None, None, []
    with resp:
        for kind, lvl, index, rng, payload in iter_frames(resp):
            if kind == KIND_HEADER:
                header = json.loads(payload)
            elif kind in (KIND_CHUNK, KIND_RECOMPUTE):
                if index != len(chunks):
                    raise KVClientError(f"frame {index} out of order")
                kv = decode_chunk(payload) if kind == KIND_CHUNK else None
                chunks.append({"index": index, "tokens": rng, "level": lvl if kind == KIND_CHUNK else "recompute",
                               "bytes": len(payload), "kv": kv, "at": time.monotonic() - t0})
            elif kind == KIND_END:
                summary = json.loads(payload)
            else:
                raise KVClientError(json.loads(payload).get("error", "stream error"))
    if header is None or summary is None:
        raise KVClientError("stream ended without header or end frame")
    return {"header": header, "chunks": chunks, "summary": summary, "ttlb": time.monotonic() - t0}


def prefix_kv(result) -> np.ndarray | None:
    """KV of the contiguous prefix before the first recompute chunk."""
    parts = []
    for c in result["chunks"]:
        if c["kv"] is None:
            break
        parts.append(c["kv"])
    return np.concatenate(parts, axis=2) if parts else None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("url")
    ap.add_argument("command", choices=["lookup", "stream", "put"])
    ap.add_argument("file")
    ap.add_argument("--token")
    ap.add_argument("--slo-ms", type=float, default=1000)
    ap.add_argument("--level", type=int)
    ap.add_argument("-o", "--output")
    a = ap.parse_args(argv)
    try:
        if a.command == "put":
            print(json.dumps(put(a.url, open(a.file, "rb").read(), a.token)))
            return 0
        tokens = json.load(open(a.file))
        if a.command == "lookup":
            print(json.dumps(lookup(a.url, tokens, a.token)))
            return 0
        r = stream(a.url, tokens, a.slo_ms, a.level, a.token)
        if r is None:
            print("no stored prefix")
            return 3
        for c in r["chunks"]:
            print(f"chunk {c['index']:3d} tokens {c['tokens'][0]}..{c['tokens'][1]} level {c['level']} "
                  f"{c['bytes']} B at {c['at'] * 1000:.1f} ms")
        print(f"time to last byte {r['ttlb'] * 1000:.1f} ms")
        kv = prefix_kv(r)
        if a.output and kv is not None:
            np.save(a.output, kv)
        return 0
    except KVClientError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
