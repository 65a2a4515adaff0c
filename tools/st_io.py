"""Minimal safetensors reader/writer in pure numpy.

File layout: u64 little-endian header length N, N bytes of JSON header (padded
with spaces to a multiple of 8), then the raw little-endian tensor bytes.
Header: {"name": {"dtype": "F16", "shape": [...], "data_offsets": [begin, end]},
         ..., "__metadata__": {"str": "str"}}  (offsets relative to the data start).

Supported dtypes: F16, BF16, F32, I32, I64 (plus F64/I8/U8/I16/U16 for reading).
BF16 has no numpy dtype: it is read as float32 (exact) and written from float32
with round-to-nearest-even (``dtype="bf16"``).  Use ``raw_bf16=True`` in
``load`` to get the raw uint16 bits instead.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

_NP = {
    "F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8"),
    "I8": np.dtype("i1"), "U8": np.dtype("u1"), "I16": np.dtype("<i2"),
    "U16": np.dtype("<u2"), "I32": np.dtype("<i4"), "I64": np.dtype("<i8"),
    "BF16": np.dtype("<u2"),
}
_ALIASES = {"f16": "F16", "float16": "F16", "half": "F16", "bf16": "BF16",
            "bfloat16": "BF16", "f32": "F32", "float32": "F32", "f64": "F64",
            "float64": "F64", "i32": "I32", "int32": "I32", "i64": "I64", "int64": "I64",
            "i8": "I8", "int8": "I8", "u8": "U8", "uint8": "U8", "i16": "I16",
            "u16": "U16"}


def norm_dtype(d) -> str:
    if isinstance(d, str):
        u = d.upper()
        if u in _NP:
            return u
        if d.lower() in _ALIASES:
            return _ALIASES[d.lower()]
        raise ValueError(f"unsupported dtype {d!r}")
    d = np.dtype(d)
    for k, v in _NP.items():
        if k != "BF16" and v == d.newbyteorder("<"):
            return k
    raise ValueError(f"unsupported numpy dtype {d}")


def f32_to_bf16_bits(a) -> np.ndarray:
    """float32 -> bfloat16 bits (uint16), round to nearest even; NaN stays NaN."""
    a = np.ascontiguousarray(a, dtype=np.float32)
    u = a.view(np.uint32)
    rounded = (u + (np.uint32(0x7FFF) + ((u >> 16) & 1))) >> 16
    nan = np.isnan(a)
    out = rounded.astype(np.uint16)
    if nan.any():
        out[nan] = ((u[nan] >> 16) | 0x0040).astype(np.uint16)
    return out


def bf16_bits_to_f32(b) -> np.ndarray:
    b = np.ascontiguousarray(b, dtype=np.uint16)
    return (b.astype(np.uint32) << 16).view(np.float32)


class Tensor:
    """A tensor to write with an explicit safetensors dtype (e.g. Tensor(x, "BF16"))."""

    def __init__(self, array, dtype):
        self.array = np.asarray(array)
        self.dtype = norm_dtype(dtype)


def _encode(arr, dtype: str) -> bytes:
    if dtype == "BF16":
        a = np.asarray(arr)
        bits = a.astype("<u2") if a.dtype == np.uint16 else f32_to_bf16_bits(a)
        return np.ascontiguousarray(bits, dtype="<u2").tobytes()
    return np.ascontiguousarray(arr, dtype=_NP[dtype]).tobytes()


def save(path, tensors: dict, metadata: dict | None = None) -> None:
    """Write tensors {name: ndarray | Tensor}. Plain ndarrays keep their own dtype."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in tensors.items():
        if name == "__metadata__":
            raise ValueError("reserved tensor name")
        if isinstance(t, Tensor):
            arr, dt = t.array, t.dtype
        else:
            arr = np.asarray(t)
            dt = norm_dtype(arr.dtype)
        b = _encode(arr, dt)
        header[name] = {"dtype": dt, "shape": [int(s) for s in arr.shape],
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((-len(hj)) % 8)
    tmp = Path(str(path) + ".tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)
    tmp.replace(path)


def read_header(path) -> tuple[dict, dict, int]:
    """Return (tensor entries, metadata, data start offset)."""
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: not a safetensors file (too short)")
        n = struct.unpack("<Q", raw)[0]
        if n > 100 * 1024 * 1024:
            raise ValueError(f"{path}: header length {n} is implausible")
        hj = f.read(n)
    header = json.loads(hj.decode("utf-8"))
    meta = header.pop("__metadata__", None) or {}
    return header, meta, 8 + n


def load(path, raw_bf16: bool = False) -> tuple[dict, dict]:
    """Read all tensors -> ({name: ndarray}, metadata). BF16 -> float32 unless raw_bf16."""
    header, meta, start = read_header(path)
    data = np.fromfile(path, dtype=np.uint8, offset=start)
    out = {}
    for name, e in header.items():
        dt = e["dtype"]
        if dt not in _NP:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        b, en = e["data_offsets"]
        shape = tuple(e["shape"])
        npdt = _NP[dt]
        count = int(np.prod(shape, dtype=np.int64))
        if en - b != count * npdt.itemsize or en > data.size:
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {b},{en}")
        a = data[b:en].view(npdt).reshape(shape)
        if dt == "BF16" and not raw_bf16:
            a = bf16_bits_to_f32(a).reshape(shape)
        else:
            a = a.astype(npdt.newbyteorder("="), copy=True)
        out[name] = a
    return out, meta


def dtypes(path) -> dict:
    header, _, _ = read_header(path)
    return {k: v["dtype"] for k, v in header.items()}
