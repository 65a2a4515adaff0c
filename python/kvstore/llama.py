"""llama.cpp's in-process sequence states <-> kvstore KV, through the project's own state parser
(libkvstore_c, Sources/KVEngineLlama): what a program that embeds libllama (llama-cpp-python's
low-level bindings) needs to store a prefix's KV and to restore a streamed one.

    model = kvstore.llama.gguf_model(path)                       # shape and kvstore model id
    state = <llama_state_seq_get_data of the prefilled sequence>
    kv, layout = kvstore.llama.state_to_kv(state, model, count=n)
    client.put(kv, tokens=ids[:n], model=model.identity)
    ...
    kv = client.stream(ids, slo_ms=500).kv()
    data = kvstore.llama.kv_to_state(kv, layout)                # for llama_state_seq_set_data

The layout (KV streams, V transposed or not) is the engine instance's: learn it from one state that
instance wrote. See python/examples/llama_restore.py.
"""
from __future__ import annotations

import ctypes
import json
import os
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from . import _lib
from ._lib import LlamaLayout, lib
from .errors import KVStoreError
from .codec import BytesLike, _buffer, _kv_arguments, tensor_to_array


@dataclass(frozen=True)
class GGUFModel:
    """A GGUF model file's KV shape, its caches and the model id kvstore files its KV under (the sidecar's)."""
    identity: str
    architecture: str
    name: str
    sha256: str
    layers: int
    kv_heads: int
    head_dim: int
    sliding_window: int = 0
    sliding_layers: tuple = ()

    def _sliding(self):
        """The (flags, window) arguments of the C calls: NULL for a model with one KV cache."""
        if not self.sliding_layers:
            return None, 0
        return (ctypes.c_uint8 * self.layers)(*[1 if f else 0 for f in self.sliding_layers]), self.sliding_window


@dataclass(frozen=True)
class Layout:
    """How one engine instance lays out a sequence's state (kvs_llama_layout) and the model's
    caches (sliding-window layers keep only the last `window` positions)."""
    stream_count: int
    v_transposed: bool
    dtype: str = "F16"
    model: Optional[GGUFModel] = None


_CACHE_TYPES = {1: "F16", 3: "F32"}


def gguf_model(path: Union[str, "os.PathLike[str]"]) -> GGUFModel:
    """Reads a GGUF file's header (and hashes the file, for the model id)."""
    out = ctypes.c_void_p()
    _lib.check(lib.kvs_gguf_model(os.fsencode(path), ctypes.byref(out)))
    info = json.loads(_lib.take_bytes(out.value))
    info["sliding_layers"] = tuple(bool(f) for f in info.get("sliding_layers", ()))
    return GGUFModel(**info)


def state_to_kv_window(state: BytesLike, model: GGUFModel, count: int = -1) -> tuple[np.ndarray, Layout, int]:
    """What llama_state_seq_get_data wrote -> the KV of positions 0..count-1 [layers, 2, count,
    kv_heads, head_dim] (float16, or float32 from an F32 cache; count -1: every cell), the engine's
    layout, and the first position the model's sliding-window layers hold: their rows before it
    are not in the state and are zero here (0 for models without such layers)."""
    buf, n = _buffer(state)
    layout, kv, start = LlamaLayout(), ctypes.c_void_p(), ctypes.c_int64()
    flags, window = model._sliding()
    _lib.check(lib.kvs_llama_state_decode(buf, n, model.layers, model.kv_heads, model.head_dim, flags, window, count,
                                          ctypes.byref(layout), ctypes.byref(start), ctypes.byref(kv)))
    return (tensor_to_array(kv.value),
            Layout(layout.stream_count, bool(layout.v_transposed), _CACHE_TYPES.get(layout.dtype, "F16"), model),
            start.value)


def state_to_kv(state: BytesLike, model: GGUFModel, count: int = -1) -> tuple[np.ndarray, Layout]:
    """state_to_kv_window for a state that holds every position of every layer: refuses one whose
    sliding-window layers lack early positions (capture those while prefilling:
    kvstore.llama_engine.Engine.prefill_kv)."""
    kv, layout, start = state_to_kv_window(state, model, count)
    if start > 0:
        raise KVStoreError(f"the state holds positions {start}.. of the sliding-window layers only (window "
                           f"{model.sliding_window}); capture all of them while prefilling (Engine.prefill_kv)")
    return kv, layout


MAX_STREAMS = 4096  # LlamaEngineLayout.maxStreamCount


def _c_layout(layout: Layout) -> LlamaLayout:
    """kvs_llama_layout of a Layout, each field checked first: ctypes would wrap a stream count of
    -1 to 2^32-1 without a word."""
    count = layout.stream_count
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or not 1 <= count <= MAX_STREAMS:
        raise KVStoreError(f"layout stream_count {count!r} is not an integer in 1..{MAX_STREAMS}")
    if layout.v_transposed not in (True, False):  # 0 and 1 compare equal to these
        raise KVStoreError(f"layout v_transposed {layout.v_transposed!r} is not a bool")
    codes = {v: k for k, v in _CACHE_TYPES.items()}
    if layout.dtype not in codes:
        raise KVStoreError(f"layout dtype {layout.dtype!r} is not one of {sorted(codes)}")
    return LlamaLayout(int(count), 1 if layout.v_transposed else 0, codes[layout.dtype])


def kv_to_state(kv: np.ndarray, layout: Layout) -> bytes:
    """KV [layers, 2, n, kv_heads, head_dim] of the engine's cache type -> the bytes
    llama_state_seq_set_data takes to hold it at positions 0..n-1."""
    c_layout = _c_layout(layout)
    a, code = _kv_arguments(kv, None)
    L, _, T, H, D = a.shape
    out = ctypes.c_void_p()
    flags, window = layout.model._sliding() if layout.model else (None, 0)
    _lib.check(lib.kvs_llama_state_encode(a.ctypes.data, a.nbytes, code, L, H, D, T, flags, window,
                                          ctypes.byref(c_layout), ctypes.byref(out)))
    return _lib.take_bytes(out.value)
