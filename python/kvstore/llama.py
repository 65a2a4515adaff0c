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
from typing import Union

import numpy as np

from . import _lib
from ._lib import LlamaLayout, lib
from .codec import BytesLike, _buffer, _kv_arguments, tensor_to_array


@dataclass(frozen=True)
class GGUFModel:
    """A GGUF model file's KV shape and the model id kvstore files its KV under (the sidecar's)."""
    identity: str
    architecture: str
    name: str
    sha256: str
    layers: int
    kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class Layout:
    """How one engine instance lays out a sequence's state (kvs_llama_layout)."""
    stream_count: int
    v_transposed: bool


def gguf_model(path: Union[str, "os.PathLike[str]"]) -> GGUFModel:
    """Reads a GGUF file's header (and hashes the file, for the model id)."""
    out = ctypes.c_void_p()
    _lib.check(lib.kvs_gguf_model(os.fsencode(path), ctypes.byref(out)))
    return GGUFModel(**json.loads(_lib.take_bytes(out.value)))


def state_to_kv(state: BytesLike, model: GGUFModel, count: int = -1) -> tuple[np.ndarray, Layout]:
    """What llama_state_seq_get_data wrote -> the float16 KV of positions 0..count-1
    [layers, 2, count, kv_heads, head_dim] (count -1: every cell) and the engine's layout."""
    buf, n = _buffer(state)
    layout, kv = LlamaLayout(), ctypes.c_void_p()
    _lib.check(lib.kvs_llama_state_decode(buf, n, model.layers, model.kv_heads, model.head_dim, count,
                                          ctypes.byref(layout), ctypes.byref(kv)))
    return tensor_to_array(kv.value), Layout(layout.stream_count, bool(layout.v_transposed))


def kv_to_state(kv: np.ndarray, layout: Layout) -> bytes:
    """float16 KV [layers, 2, n, kv_heads, head_dim] -> the bytes llama_state_seq_set_data takes
    to hold it at positions 0..n-1."""
    a, code = _kv_arguments(kv, None)
    L, _, T, H, D = a.shape
    out = ctypes.c_void_p()
    c_layout = LlamaLayout(layout.stream_count, 1 if layout.v_transposed else 0)
    _lib.check(lib.kvs_llama_state_encode(a.ctypes.data, a.nbytes, code, L, H, D, T, ctypes.byref(c_layout),
                                          ctypes.byref(out)))
    return _lib.take_bytes(out.value)
