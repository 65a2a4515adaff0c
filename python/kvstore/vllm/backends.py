"""Where the connector's KV lives: an embedded store directory or a `kvstore serve`.

Both answer the same three questions: how many leading tokens are stored (whole chunks), the KV of
the first n of them (canonical [layers, 2, n, kv_heads, head_dim], decoded by the project's codec
through libkvstore_c), and store a context.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..errors import KVStoreError
from ..store import Space, Store


class EmbeddedBackend:
    """A store directory opened in this process (kvs_store_*)."""

    def __init__(self, root: str, levels: Sequence[int]):
        self.store = Store(root, create=True)
        self.levels = list(levels)
        self.chunk_tokens = self.store.chunk_tokens
        self.where = root

    def matched(self, space: Space, tokens: Sequence[int]) -> int:
        return self.store.lookup(space, tokens)[0]

    def read(self, space: Space, tokens: Sequence[int], n: int) -> np.ndarray:
        """KV of the first n tokens (n a multiple of chunk_tokens, all stored)."""
        kv = self.store.read(space, tokens[:n], 0, n // self.chunk_tokens, level=min(self.levels))
        if kv.shape[2] != n:
            raise KVStoreError(f"the store gave {kv.shape[2]} of {n} tokens")
        return kv

    def put(self, space: Space, kv: np.ndarray, tokens: Sequence[int]) -> dict:
        return self.store.put(space, kv, tokens, self.levels)

    def close(self) -> None:
        self.store.close()


class RemoteBackend:
    """A `kvstore serve` (on loopback as the node's cache, or remote): lookup, a stream with the
    deadline `slo_ms` (the server picks each chunk's level), put. The server's tenant is the one of
    `token`; a space's own tenant (a request's cache salt) cannot be asked for, so such requests are
    neither looked up nor stored."""

    def __init__(self, url: str, token: Optional[str], levels: Sequence[int], slo_ms: float,
                 chunk_tokens: int = 256):
        from ..client import Client
        self.client = Client(url, token=token, timeout=30.0)
        self.levels = list(levels)
        self.slo_ms = slo_ms
        self.chunk_tokens = chunk_tokens
        self.where = url

    def matched(self, space: Space, tokens: Sequence[int]) -> int:
        if space.tenant is not None:
            return 0
        got = self.client.lookup(list(tokens), model=space.model, dtype=space.dtype)
        # Whole chunks only, of the size this connector was told: a server with other chunks is a miss.
        end = 0
        for c in got.get("chunks", []):
            if c["start"] != end or c["end"] - c["start"] != self.chunk_tokens:
                break
            end = c["end"]
        return end

    def read(self, space: Space, tokens: Sequence[int], n: int) -> np.ndarray:
        # Level 0 only when it is the only level stored: then the load is exact or it fails.
        level = 0 if self.levels == [0] else None
        with self.client.stream(list(tokens[:n]), slo_ms=self.slo_ms, level=level, model=space.model,
                                dtype=space.dtype) as stream:
            kv = stream.kv()
            got = stream.kv_tokens
        if kv is None or got < n:
            raise KVStoreError(f"the server streamed {got} of {n} tokens")
        return kv[:, :, :n]

    def put(self, space: Space, kv: np.ndarray, tokens: Sequence[int]) -> dict:
        if space.tenant is not None:
            return {"skipped": "a request's own tenant cannot be stored through a server"}
        return self.client.put(kv, tokens=list(tokens), model=space.model, levels=self.levels)

    def close(self) -> None:
        pass
