"""ctypes bindings of libkvstore_c (Sources/KVStoreC/include/kvstore.h).

The library is found, in order, at $KVSTORE_C_LIB, next to this file (where `pip install` puts
it), or in the repository's .build/{release,debug}/ when the package runs from a checkout.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path
from typing import Optional

from .errors import KVStoreError, error_for_code

LIB_NAME = "libkvstore_c.so"
ABI_VERSION = 3

c_int32, c_int64, c_size_t = ctypes.c_int32, ctypes.c_int64, ctypes.c_size_t
c_void_p, c_char_p = ctypes.c_void_p, ctypes.c_char_p
P = ctypes.POINTER


class Info(ctypes.Structure):
    """kvs_info."""
    _fields_ = [("dtype", c_int32), ("level", c_int32), ("layers", c_int64), ("kv_heads", c_int64),
                ("head_dim", c_int64), ("tokens", c_int64), ("nbytes", c_int64)]


class LlamaLayout(ctypes.Structure):
    """kvs_llama_layout."""
    _fields_ = [("stream_count", ctypes.c_uint32), ("v_transposed", c_int32), ("dtype", c_int32)]


class Event(ctypes.Structure):
    """kvs_event."""
    _fields_ = [("kind", c_int32), ("level", c_int32), ("index", c_int64), ("token_start", c_int64),
                ("token_end", c_int64), ("payload_bytes", c_int64), ("json", c_void_p), ("json_length", c_size_t)]


def candidates() -> list[Path]:
    out = []
    if os.environ.get("KVSTORE_C_LIB"):
        out.append(Path(os.environ["KVSTORE_C_LIB"]))
    here = Path(__file__).resolve().parent
    out.append(here / LIB_NAME)
    repo = here.parents[1]  # python/kvstore -> repository root, when run from a checkout
    out += [repo / ".build" / "release" / LIB_NAME, repo / ".build" / "debug" / LIB_NAME]
    return out


def _signatures(lib: ctypes.CDLL) -> None:
    tensor_out = P(c_void_p)
    shape = [c_int32, c_int64, c_int64, c_int64]  # dtype, layers, kv_heads, head_dim
    sigs = {
        "kvs_abi_version": (c_int32, []),
        "kvs_version_string": (c_char_p, []),
        "kvs_last_error": (c_char_p, []),
        "kvs_tensor_info": (None, [c_void_p, P(Info)]),
        "kvs_tensor_data": (c_void_p, [c_void_p]),
        "kvs_tensor_copy": (c_int32, [c_void_p, c_void_p, c_size_t]),
        "kvs_tensor_free": (None, [c_void_p]),
        "kvs_bytes_data": (c_void_p, [c_void_p]),
        "kvs_bytes_length": (c_size_t, [c_void_p]),
        "kvs_bytes_free": (None, [c_void_p]),
        "kvs_chunk_info": (c_int32, [c_void_p, c_size_t, P(Info)]),
        "kvs_chunk_decode": (c_int32, [c_void_p, c_size_t, tensor_out]),
        "kvs_chunk_encode": (c_int32, [c_void_p, c_size_t, *shape, c_int64, c_int32, tensor_out]),
        "kvs_chunk_encode_profile": (c_int32, [c_void_p, c_size_t, *shape, c_int64, c_int32, c_char_p, c_int64,
                                               tensor_out]),
        "kvs_file_decode": (c_int32, [c_void_p, c_size_t, tensor_out, tensor_out, tensor_out]),
        "kvs_safetensors_decode": (c_int32, [c_void_p, c_size_t, tensor_out, tensor_out, tensor_out]),
        "kvs_file_encode": (c_int32, [c_void_p, c_size_t, *shape, c_void_p, c_int64, c_char_p, c_int32, c_int64,
                                      tensor_out]),
        "kvs_file_encode_profile": (c_int32, [c_void_p, c_size_t, *shape, c_void_p, c_int64, c_char_p, c_int32, c_int64,
                                              c_char_p, c_int64, tensor_out]),
        "kvs_safetensors_encode": (c_int32, [c_void_p, c_size_t, *shape, c_void_p, c_int64, c_char_p, tensor_out]),
        "kvs_stream_new": (c_void_p, []),
        "kvs_stream_feed": (c_int32, [c_void_p, c_void_p, c_size_t]),
        "kvs_stream_next": (c_int32, [c_void_p, P(Event), tensor_out]),
        "kvs_stream_finish": (c_int32, [c_void_p]),
        "kvs_stream_free": (None, [c_void_p]),
        "kvs_llama_state_decode": (c_int32, [c_void_p, c_size_t, c_int64, c_int64, c_int64, c_void_p, c_int64, c_int64,
                                             P(LlamaLayout), P(c_int64), tensor_out]),
        "kvs_llama_state_encode": (c_int32, [c_void_p, c_size_t, *shape, c_int64, c_void_p, c_int64, P(LlamaLayout),
                                             tensor_out]),
        "kvs_gguf_model": (c_int32, [c_char_p, tensor_out]),
    }
    for name, (restype, argtypes) in sigs.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = restype, argtypes


def load() -> tuple[ctypes.CDLL, Path]:
    tried = []
    for path in candidates():
        if not path.is_file():
            tried.append(f"{path} (absent)")
            continue
        try:
            lib = ctypes.CDLL(str(path))  # ctypes releases the GIL during every call
        except OSError as e:
            tried.append(f"{path} ({e})")
            continue
        lib.kvs_abi_version.restype = c_int32
        if lib.kvs_abi_version() != ABI_VERSION:
            tried.append(f"{path} (ABI {lib.kvs_abi_version()}, this package needs {ABI_VERSION})")
            continue
        try:
            _signatures(lib)
        except AttributeError as e:  # a build older than this package, same ABI (e.g. no kvs_file_encode_profile)
            tried.append(f"{path} (older build: {e})")
            continue
        return lib, path
    raise KVStoreError("libkvstore_c not found; build it with `swift build -c release --product kvstore_c` "
                       "or set KVSTORE_C_LIB. Tried: " + "; ".join(tried))


lib, path = load()


def check(status: int) -> int:
    """Raises the library's error for a negative status; returns the status otherwise."""
    if status < 0:
        raise error_for_code(status, lib.kvs_last_error().decode("utf-8", "replace"))
    return status


def view(address: Optional[int], length: int) -> memoryview:
    """The `length` bytes at `address`, without a copy. Sizes are size_t: ctypes.string_at takes a
    C int, which fails past 2 GiB and wraps past 4 GiB."""
    if length == 0:
        return memoryview(b"")
    if not address:
        raise KVStoreError(f"the library returned no address for {length} bytes")
    return memoryview((ctypes.c_char * length).from_address(address)).cast("B")


def take_bytes(handle: Optional[int]) -> bytes:
    """Copies a kvs_bytes into Python bytes (any size) and frees it."""
    if not handle:
        raise KVStoreError("the library returned no bytes")
    try:
        return bytes(view(lib.kvs_bytes_data(handle), lib.kvs_bytes_length(handle)))
    finally:
        lib.kvs_bytes_free(handle)
