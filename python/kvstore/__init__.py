"""kvstore for Python inference engines: the project's own codec and stream reader (libkvstore_c,
every level 0-4) behind a small API.

    import kvstore
    client = kvstore.Client("http://127.0.0.1:7070", token=None)
    client.lookup(tokens)                              # longest stored prefix
    for chunk in client.stream(tokens, slo_ms=500):    # chunks decoded as frames arrive
        chunk.kv                                       # numpy [layers, 2, tokens, kv_heads, head_dim]
    client.put("context.safetensors")                  # or client.put(kv_array, tokens=ids)
    kvstore.decode(open("ctx.kvc", "rb").read())       # a stored container or .kvc file
    kvstore.llama.state_to_kv(state, model)            # llama.cpp sequence states <-> KV
    kvstore.Store("/path/to/store", create=True)       # the embedded store: no server (kvstore.store)
    # vLLM: kv_connector "KVStoreConnector" from module kvstore.vllm (docs/vllm.md)

See docs/python.md.
"""
from __future__ import annotations

from . import _lib, llama
from .client import Chunk, Client, FrameDecoder, Stream, StreamEvent
from .codec import (ChunkInfo, Context, chunk_info, decode, decode_chunk, decode_file, encode_chunk, encode_file,
                    read_safetensors, safetensors_bytes)
from .errors import CodecError, KVStoreError, ServerError, StreamError
from .store import Space, Store

__version__ = "0.1.0"
library_path = str(_lib.path)
library_version: str = _lib.lib.kvs_version_string().decode()

__all__ = ["Chunk", "ChunkInfo", "Client", "CodecError", "Context", "FrameDecoder", "StreamEvent", "KVStoreError", "ServerError", "Stream",
           "StreamError", "chunk_info", "decode", "decode_chunk", "decode_file", "encode_chunk", "encode_file",
           "library_path", "library_version", "llama", "read_safetensors", "safetensors_bytes", "Space", "Store"]
