"""The embedded store: a kvstore directory used in this process through libkvstore_c, no server.

    store = kvstore.Store("/var/cache/kvstore", create=True)
    space = kvstore.Space(model="vllm/SmolLM2@sha256:...", dtype="F32", layers=30, kv_heads=3, head_dim=64)
    store.put(space, kv, tokens, levels=[0])        # kv: [layers, 2, tokens, kv_heads, head_dim]
    matched, chunks = store.lookup(space, tokens)   # longest stored prefix
    kv = store.read(space, tokens, 0, chunks)       # its KV, decoded by the project's codec

Several processes may share one store (as the CLI does); see include/kvstore.h, "embedded store".
"""
from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from . import _lib
from .codec import _CODES, DTYPES, tensor_to_array
from .errors import KVStoreError

c_int32, c_int64, c_size_t, c_void_p, c_char_p = (ctypes.c_int32, ctypes.c_int64, ctypes.c_size_t, ctypes.c_void_p,
                                                   ctypes.c_char_p)
P = ctypes.POINTER

_SIGNATURES = {
    "kvs_store_open": (c_int32, [c_char_p, c_int64, c_int32, P(c_void_p)]),
    "kvs_store_chunk_tokens": (c_int64, [c_void_p]),
    "kvs_store_close": (None, [c_void_p]),
    "kvs_store_lookup": (c_int32, [c_void_p, c_char_p, c_void_p, c_int64, P(c_int64), P(c_int64)]),
    "kvs_store_read": (c_int32, [c_void_p, c_char_p, c_void_p, c_int64, c_int32, c_int64, c_int64, P(c_void_p)]),
    "kvs_store_put": (c_int32, [c_void_p, c_char_p, c_void_p, c_size_t, c_void_p, c_int64, c_void_p, c_int64,
                                P(c_void_p)]),
}


def _bind() -> ctypes.CDLL:
    lib = _lib.lib
    if not hasattr(lib, "kvs_store_open"):
        raise KVStoreError(f"{_lib.path} has no embedded store (kvs_store_open): rebuild libkvstore_c")
    for name, (restype, argtypes) in _SIGNATURES.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = restype, argtypes
    return lib


@dataclass(frozen=True)
class Space:
    """What stored KV must match to be reused: the model id, the KV's dtype and shape, the tenant."""
    model: str
    dtype: str  # F16, BF16 or F32
    layers: int
    kv_heads: int
    head_dim: int
    tenant: Optional[str] = None

    def json(self) -> bytes:
        d = {"model": self.model, "dtype": self.dtype, "layers": self.layers, "kv_heads": self.kv_heads,
             "head_dim": self.head_dim}
        if self.tenant is not None:
            d["tenant"] = self.tenant
        return json.dumps(d).encode()


def _ids(tokens) -> np.ndarray:
    ids = np.ascontiguousarray(np.asarray(tokens, dtype=np.int64))
    if ids.ndim != 1 or (ids < 0).any() or (ids > 2**31 - 1).any():
        raise KVStoreError("token ids must be a list of ints in 0...2^31-1")
    return ids.astype("<i4")


class Store:
    """One open of a store directory (close() or use as a context manager)."""

    def __init__(self, root: str, create: bool = False, chunk_tokens: int = 0):
        self._lib = _bind()
        handle = c_void_p()
        _lib.check(self._lib.kvs_store_open(str(root).encode(), chunk_tokens, 1 if create else 0, ctypes.byref(handle)))
        self._handle: Optional[int] = handle.value
        self.root = str(root)
        self.chunk_tokens: int = self._lib.kvs_store_chunk_tokens(self._handle)

    def _h(self) -> int:
        if not self._handle:
            raise KVStoreError("the store is closed")
        return self._handle

    def lookup(self, space: Space, tokens) -> tuple[int, int]:
        """(tokens, chunks) of the longest stored prefix of `tokens`."""
        ids = _ids(tokens)
        matched, chunks = c_int64(), c_int64()
        _lib.check(self._lib.kvs_store_lookup(self._h(), space.json(), ids.ctypes.data, len(ids), ctypes.byref(matched),
                                              ctypes.byref(chunks)))
        return matched.value, chunks.value

    def read(self, space: Space, tokens, first_chunk: int, chunk_count: int, level: int = -1) -> np.ndarray:
        """KV [layers, 2, tokens, kv_heads, head_dim] of chunks [first_chunk, first_chunk + chunk_count) of
        the longest stored prefix of `tokens` (level -1: the best stored). Raises CodecError for a corrupt
        chunk, and for chunks no longer stored."""
        ids = _ids(tokens)
        out = c_void_p()
        _lib.check(self._lib.kvs_store_read(self._h(), space.json(), ids.ctypes.data, len(ids), level, first_chunk,
                                            chunk_count, ctypes.byref(out)))
        return tensor_to_array(out.value)

    def put(self, space: Space, kv: np.ndarray, tokens, levels: Sequence[int] = (0,)) -> dict:
        """Stores a context (KV of the space's dtype and shape); returns the put's report."""
        dt = DTYPES[_CODES[space.dtype.upper()]]
        a = np.ascontiguousarray(kv, dtype=dt)
        ids = _ids(tokens)
        lv = np.ascontiguousarray(np.asarray(list(levels), dtype="<i4"))
        out = c_void_p()
        _lib.check(self._lib.kvs_store_put(self._h(), space.json(), a.ctypes.data, a.nbytes, ids.ctypes.data, len(ids),
                                           lv.ctypes.data, len(lv), ctypes.byref(out)))
        return json.loads(_lib.take_bytes(out.value))

    def close(self) -> None:
        if self._handle:
            self._lib.kvs_store_close(self._handle)
            self._handle = None

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
