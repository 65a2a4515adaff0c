"""Chunk containers and .kvc files through the project's codec (every level, 0 lossless to 4)."""
from __future__ import annotations

import ctypes
import json
import os
import weakref
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from . import _lib
from ._lib import Info, lib
from .errors import CodecError, KVStoreError

# Element types by kvs dtype code. numpy has no bfloat16: BF16 arrays hold the raw 16-bit patterns
# (view them with ml_dtypes.bfloat16, or widen: (a.astype(np.uint32) << 16).view(np.float32)).
DTYPES: dict[int, np.dtype] = {1: np.dtype("<f2"), 2: np.dtype("<u2"), 3: np.dtype("<f4")}
DTYPE_NAMES = {1: "F16", 2: "BF16", 3: "F32"}
_CODES = {"F16": 1, "BF16": 2, "F32": 3}

BytesLike = Union[bytes, bytearray, memoryview]


@dataclass(frozen=True)
class ChunkInfo:
    """What a chunk container's header says (checked, before decoding)."""
    level: int
    dtype: str  # F16, BF16 or F32
    layers: int
    kv_heads: int
    head_dim: int
    tokens: int
    nbytes: int

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (self.layers, 2, self.tokens, self.kv_heads, self.head_dim)


@dataclass
class Context:
    """A decoded .kvc file: KV [layers, 2, tokens, kv_heads, head_dim], token ids, metadata."""
    kv: np.ndarray
    tokens: np.ndarray
    metadata: dict[str, str] = field(default_factory=dict)


def _buffer(data: BytesLike) -> tuple[object, int]:
    """A pointer-able view of `data` without copying it (bytes are passed as is)."""
    if isinstance(data, bytes):
        return data, len(data)
    mv = memoryview(data).cast("B")
    if not mv.contiguous:
        raise CodecError(-1, "the input buffer is not contiguous")
    if mv.readonly:
        return mv.tobytes(), mv.nbytes
    return (ctypes.c_char * mv.nbytes).from_buffer(mv), mv.nbytes


def tensor_to_array(handle: Optional[int]) -> np.ndarray:
    """Wraps a kvs_tensor as a numpy array without copying; the tensor is freed with the array."""
    if not handle:
        raise KVStoreError("the library returned no tensor")
    info = Info()
    lib.kvs_tensor_info(handle, ctypes.byref(info))
    shape = (info.layers, 2, info.tokens, info.kv_heads, info.head_dim)
    dt = DTYPES[info.dtype]
    if info.nbytes == 0:
        lib.kvs_tensor_free(handle)
        return np.empty(shape, dt)
    buf = (ctypes.c_char * info.nbytes).from_address(lib.kvs_tensor_data(handle))
    weakref.finalize(buf, lib.kvs_tensor_free, handle)
    return np.frombuffer(buf, dtype=dt).reshape(shape)


def chunk_info(container: BytesLike) -> ChunkInfo:
    """Shape, dtype and level of a chunk container, from its header alone."""
    buf, n = _buffer(container)
    info = Info()
    _lib.check(lib.kvs_chunk_info(buf, n, ctypes.byref(info)))
    return ChunkInfo(level=info.level, dtype=DTYPE_NAMES[info.dtype], layers=info.layers, kv_heads=info.kv_heads,
                     head_dim=info.head_dim, tokens=info.tokens, nbytes=info.nbytes)


def decode_chunk(container: BytesLike) -> np.ndarray:
    """A chunk container (KVCK, any level) -> KV [layers, 2, tokens, kv_heads, head_dim]."""
    buf, n = _buffer(container)
    handle = ctypes.c_void_p()
    _lib.check(lib.kvs_chunk_decode(buf, n, ctypes.byref(handle)))
    return tensor_to_array(handle.value)


def _context(function, data: BytesLike) -> Context:
    buf, n = _buffer(data)
    kv, tokens, meta = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    _lib.check(function(buf, n, ctypes.byref(kv), ctypes.byref(tokens), ctypes.byref(meta)))
    ids = np.frombuffer(_lib.take_bytes(tokens.value), dtype="<i4")
    metadata = json.loads(_lib.take_bytes(meta.value))
    return Context(kv=tensor_to_array(kv.value), tokens=ids, metadata=metadata)


def decode_file(data: BytesLike) -> Context:
    """A .kvc file (`kvstore encode`) -> Context, exactly as `kvstore decode` reads it."""
    return _context(lib.kvs_file_decode, data)


def read_safetensors(source: Union[str, "os.PathLike[str]", BytesLike]) -> Context:
    """A safetensors context (a path or its bytes), read and checked as `kvstore put` reads it."""
    if not isinstance(source, (bytes, bytearray, memoryview)):
        with open(source, "rb") as f:
            source = f.read()
    return _context(lib.kvs_safetensors_decode, source)


def decode(data: BytesLike) -> Union[np.ndarray, Context]:
    """Decodes what the store holds: a chunk container (KVCK) -> its KV array, or a .kvc file
    (KVCF) -> Context. Any level; the bytes are checked (checksums, sizes) before use."""
    magic = bytes(memoryview(data)[:4])
    if magic == b"KVCF":
        return decode_file(data)
    return decode_chunk(data)


def _kv_arguments(kv: np.ndarray, dtype: Optional[str]) -> tuple[np.ndarray, int]:
    """A contiguous little-endian array of the stored dtype, and its kvs code. float16/float32 arrays
    are stored as they are unless `dtype` says otherwise; BF16 needs 16-bit patterns (uint16 or
    ml_dtypes.bfloat16)."""
    kv = np.asarray(kv)
    if kv.ndim != 5 or kv.shape[1] != 2:
        raise CodecError(-1, f"kv has shape {kv.shape}, expected [layers, 2, tokens, kv_heads, head_dim]")
    bf16_bits = kv.dtype.name == "bfloat16" or kv.dtype == np.uint16
    if dtype is None:
        dtype = "BF16" if bf16_bits else {"float16": "F16", "float32": "F32"}.get(kv.dtype.name, "")
    code = _CODES.get(dtype.upper())
    if code is None:
        raise CodecError(-1, f"kv of {kv.dtype} (dtype {dtype!r}): expected float16, float32 or bfloat16 bits")
    if code == 2:
        if not bf16_bits:
            raise CodecError(-1, f"BF16 needs 16-bit patterns (uint16 or bfloat16), got {kv.dtype}")
        return np.ascontiguousarray(kv).view("<u2"), code
    return np.ascontiguousarray(kv, dtype=DTYPES[code].type), code


def encode_chunk(kv: np.ndarray, level: int = 0, dtype: Optional[str] = None,
                 profile: Union[None, str, os.PathLike, BytesLike] = None) -> bytes:
    """KV [layers, 2, tokens, kv_heads, head_dim] -> a chunk container at `level` (0-4). `profile` as
    in encode_file; None = the default derived from the KV."""
    a, code = _kv_arguments(kv, dtype)
    profile = _profile_argument(profile)
    out = ctypes.c_void_p()
    L, _, T, H, D = a.shape
    _lib.check(lib.kvs_chunk_encode_profile(a.ctypes.data, a.nbytes, code, L, H, D, T, level, profile,
                                            len(profile) if profile is not None else 0, ctypes.byref(out)))
    return _lib.take_bytes(out.value)


def _profile_argument(profile) -> Optional[bytes]:
    """A codec profile given as a file path or the file's bytes -> its bytes (None stays None)."""
    if isinstance(profile, (str, os.PathLike)):
        with open(profile, "rb") as f:
            return f.read()
    return None if profile is None else bytes(profile)


def _tokens_argument(tokens, count: int) -> np.ndarray:
    ids = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64))
    if ids.ndim != 1 or len(ids) != count:
        raise CodecError(-1, f"{ids.size} token ids for {count} tokens of KV")
    if (ids < 0).any() or (ids > 2**31 - 1).any():
        raise CodecError(-1, "token ids must be in 0...2^31-1")
    return ids.astype("<i4")


def encode_file(kv: np.ndarray, tokens, level: int = 0, model: Optional[str] = None, chunk_tokens: int = 256,
                dtype: Optional[str] = None, profile: Union[None, str, os.PathLike, BytesLike] = None) -> bytes:
    """A context -> a .kvc file at `level`, as `kvstore encode` writes it. `profile`: the model's codec
    profile (schemas/codec-profile.md) as a file path or the file's bytes, as `kvstore encode --profile`;
    None = the default derived from the KV, as `kvstore encode` without --profile."""
    a, code = _kv_arguments(kv, dtype)
    L, _, T, H, D = a.shape
    ids = _tokens_argument(tokens, T)
    profile = _profile_argument(profile)
    out = ctypes.c_void_p()
    _lib.check(lib.kvs_file_encode_profile(a.ctypes.data, a.nbytes, code, L, H, D, ids.ctypes.data, len(ids),
                                           model.encode() if model else None, level, chunk_tokens,
                                           profile, len(profile) if profile is not None else 0, ctypes.byref(out)))
    return _lib.take_bytes(out.value)


def safetensors_bytes(kv: np.ndarray, tokens, model: Optional[str] = None, dtype: Optional[str] = None) -> bytes:
    """A context as the safetensors file `kvstore put` and `POST /v1/contexts` take."""
    a, code = _kv_arguments(kv, dtype)
    L, _, T, H, D = a.shape
    ids = _tokens_argument(tokens, T)
    out = ctypes.c_void_p()
    _lib.check(lib.kvs_safetensors_encode(a.ctypes.data, a.nbytes, code, L, H, D, ids.ctypes.data, len(ids),
                                          model.encode() if model else None, ctypes.byref(out)))
    return _lib.take_bytes(out.value)
