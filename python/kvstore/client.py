"""HTTP client of `kvstore serve` (schemas/openapi.yaml): lookup, put, and streams decoded by the
project's own stream reader and codec while they download."""
from __future__ import annotations

import ctypes
import http.client
import json
import os
import queue
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Optional, Union

import numpy as np

from . import _lib
from ._lib import Event, lib
from .codec import safetensors_bytes, tensor_to_array
from .errors import KVStoreError, ServerError, StreamError

Tokens = Union[Iterable[int], np.ndarray]
PathLike = Union[str, "os.PathLike[str]"]

EVENT_HEADER, EVENT_CHUNK, EVENT_RECOMPUTE, EVENT_END = 0, 1, 2, 3
READ_PIECE = 1 << 20      # bytes per socket read
QUEUED_PIECES = 64        # bound on what the reader thread holds ahead of the decoder


@dataclass
class Chunk:
    """One chunk of a streamed prefix, in order."""
    index: int
    start: int                 # token range in the query
    end: int
    level: Optional[int]       # 0-4, None when the server said recompute
    kv: Optional[np.ndarray]   # [layers, 2, end - start, kv_heads, head_dim]; None for recompute
    nbytes: int                # payload bytes on the wire
    decoded_at: float          # seconds from sending the request to this chunk being decoded

    @property
    def recompute(self) -> bool:
        """The server sent no KV: prefill tokens start..end from text."""
        return self.level is None


def _token_list(tokens: Tokens) -> list[int]:
    return [int(t) for t in np.asarray(tokens).reshape(-1)]


def _query_string(params: dict[str, Any]) -> str:
    """Every reserved character percent-encoded, a space as %20: the server reads a query as RFC 3986
    does, so a `+` is a plus (model ids may hold one), not form encoding's space."""
    return urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="")


def _query(tokens: Tokens, model: Optional[str], dtype: Optional[str]) -> bytes:
    """A TokenQuery body (schemas/openapi.yaml)."""
    q: dict[str, Any] = {"tokens": _token_list(tokens)}
    if model:
        q["model"] = model
    if dtype:
        q["dtype"] = dtype
    return json.dumps(q).encode()


class Client:
    """A `kvstore serve` at `url` (http://HOST:PORT), as tenant `token` when the server has
    --auth-tokens. Each call uses its own connection, so one Client may serve several threads."""

    def __init__(self, url: str, token: Optional[str] = None, timeout: float = 60.0):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "http" or not u.hostname:
            raise KVStoreError(f"invalid URL {url!r} (expected http://HOST:PORT)")
        self.host, self.port = u.hostname, u.port or 80
        self.token = token if token is not None else os.environ.get("KVSTORE_TOKEN")
        self.timeout = timeout

    def _send(self, path: str, body: bytes, content_type: str) -> tuple[socket.socket, http.client.HTTPResponse]:
        """Sends a request on a new connection; its socket (to shut down) and the response."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        headers = {"Content-Type": content_type, "Connection": "close"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            conn.request("POST", path, body=body, headers=headers)
            sock = conn.sock  # getresponse() hands it over to the response
            return sock, conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise StreamError(f"connection to {self.host}:{self.port} failed: {e}") from None

    @staticmethod
    def _raise_for(resp: http.client.HTTPResponse) -> None:
        body = resp.read(1 << 16)
        try:
            message = json.loads(body)["error"]
        except (ValueError, KeyError, TypeError):
            message = body[:200].decode("utf-8", "replace")
        raise ServerError(resp.status, message)

    def _call(self, path: str, body: bytes, content_type: str = "application/json") -> Any:
        _, resp = self._send(path, body, content_type)
        with resp:
            if resp.status // 100 != 2:
                self._raise_for(resp)
            return json.loads(resp.read())

    def lookup(self, tokens: Tokens, model: Optional[str] = None, dtype: Optional[str] = None) -> dict[str, Any]:
        """Longest stored prefix of `tokens`: {"matched_tokens", "query_tokens", "chunks": [{"index",
        "start", "end", "levels": [{"level", "bytes"}]}]} (a miss matches 0 tokens). `model` and
        `dtype` (F16, BF16, F32) choose among several stored models."""
        return self._call("/v1/lookup", _query(tokens, model, dtype))

    def put(self, source: Union[PathLike, bytes, np.ndarray], tokens: Optional[Tokens] = None,
            model: Optional[str] = None, levels: Optional[Iterable[int]] = None, name: Optional[str] = None) -> dict[str, Any]:
        """Stores a context: a safetensors file (path or bytes, as `kvstore put` takes), or a KV
        array [layers, 2, tokens, kv_heads, head_dim] with its `tokens`. Returns the PutReport."""
        if isinstance(source, np.ndarray):
            if tokens is None:
                raise KVStoreError("put(array) needs the context's tokens")
            body = safetensors_bytes(source, tokens, model)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            body = bytes(source)
        else:
            with open(source, "rb") as f:
                body = f.read()
        q = {k: v for k, v in [("model", model), ("name", name),
                               ("levels", ",".join(str(int(l)) for l in levels) if levels is not None else None)] if v}
        path = "/v1/contexts" + ("?" + _query_string(q) if q else "")
        return self._call(path, body, "application/octet-stream")

    def stream(self, tokens: Tokens, slo_ms: float = 1000.0, level: Optional[int] = None, model: Optional[str] = None,
               dtype: Optional[str] = None, bandwidth_hint_mbps: Optional[float] = None, decode: bool = True) -> "Stream":
        """Streams the KV of the longest stored prefix of `tokens`. Iterate the result for the
        chunks in order, each decoded as soon as its frame has arrived (a thread reads the socket
        meanwhile); `level` pins every chunk to one level, else the server picks per chunk for the
        `slo_ms` deadline. A miss is a Stream with `found == False` and no chunks."""
        q: dict[str, Any] = {"slo_ms": slo_ms}
        if level is not None:
            q["level"] = int(level)
        if bandwidth_hint_mbps is not None:
            q["bandwidth_hint_mbps"] = bandwidth_hint_mbps
        started = time.monotonic()
        sock, resp = self._send("/v1/stream?" + _query_string(q), _query(tokens, model, dtype), "application/json")
        if resp.status == 404:
            resp.close()
            return Stream(None, None, started, decode)
        if resp.status != 200:
            with resp:
                self._raise_for(resp)
        return Stream(sock, resp, started, decode)


@dataclass
class StreamEvent:
    """One frame of a stream as the library read it: kind 0 header, 1 chunk, 2 recompute, 3 end."""
    kind: int
    index: int
    start: int
    end: int
    level: Optional[int]
    kv: Optional[np.ndarray]
    nbytes: int
    json: Optional[dict[str, Any]]


class FrameDecoder:
    """Incremental reader of a frame stream (schemas/stream-frames.md) over libkvstore_c: feed the
    body in pieces of any size, take events out; chunk frames are decoded (any level) and checked
    as `kvstore get --remote` checks them."""

    def __init__(self, decode: bool = True):
        self._handle = lib.kvs_stream_new()
        self._decode = decode

    def feed(self, data: bytes) -> None:
        _lib.check(lib.kvs_stream_feed(self._handle, data, len(data)))

    def next(self) -> Optional[StreamEvent]:
        """The next event, or None until more bytes are fed. An error frame raises ServerError
        with the server's message; a malformed stream raises StreamError."""
        event, tensor = Event(), ctypes.c_void_p()
        if _lib.check(lib.kvs_stream_next(self._handle, ctypes.byref(event),
                                          ctypes.byref(tensor) if self._decode else None)) == 0:
            return None
        kv = tensor_to_array(tensor.value) if tensor.value else None
        doc = json.loads(bytes(_lib.view(event.json, event.json_length))) if event.json else None
        return StreamEvent(kind=event.kind, index=event.index, start=event.token_start, end=event.token_end,
                           level=event.level if event.kind == EVENT_CHUNK else None, kv=kv,
                           nbytes=event.payload_bytes, json=doc)

    def finish(self) -> None:
        """Raises StreamError unless the stream was complete (end frame, every chunk, no leftover)."""
        _lib.check(lib.kvs_stream_finish(self._handle))

    def close(self) -> None:
        if getattr(self, "_handle", None) is not None:
            lib.kvs_stream_free(self._handle)
            self._handle = None

    def __del__(self) -> None:
        self.close()


class Stream(Iterator[Chunk]):
    """The chunks of one streamed prefix. `header` (the StreamHeader) is set once the first frame
    has been read, `summary` (the StreamSummary) at the end; `chunks` lists what was yielded."""

    def __init__(self, sock: Optional[socket.socket], resp: Optional[http.client.HTTPResponse],
                 started: float, decode: bool):
        self.found = resp is not None
        self.header: Optional[dict[str, Any]] = None
        self.summary: Optional[dict[str, Any]] = None
        self.chunks: list[Chunk] = []
        self.nbytes = 0                      # body bytes received
        self.first_byte: Optional[float] = None  # seconds from the request to the first / last body byte
        self.last_byte: Optional[float] = None
        self._started, self._sock, self._resp, self._done = started, sock, resp, not self.found
        self._frames = FrameDecoder(decode) if self.found else None
        self._pieces: "queue.Queue[Union[bytes, BaseException, None]]" = queue.Queue(QUEUED_PIECES)
        if resp is not None:
            self._reader = threading.Thread(target=self._read, args=(resp,), daemon=True)
            self._reader.start()

    def _read(self, resp: http.client.HTTPResponse) -> None:
        """The reader thread: socket -> queue, so the download goes on while chunks decode."""
        try:
            while True:
                piece = resp.read1(READ_PIECE)
                now = time.monotonic() - self._started
                if not piece:
                    break
                if self.first_byte is None:
                    self.first_byte = now
                self.last_byte = now
                self.nbytes += len(piece)
                self._pieces.put(piece)
            self._pieces.put(None)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._pieces.put(e)

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> Chunk:
        if self._done:
            raise StopIteration
        try:
            return self._next()
        except BaseException:
            self.close()
            raise

    def _next(self) -> Chunk:
        assert self._frames is not None  # set while the stream is not done
        while True:
            ev = self._frames.next()
            if ev is None:
                piece = self._pieces.get()
                if piece is None:
                    self._frames.finish()
                    self.close()
                    raise StopIteration
                if isinstance(piece, BaseException):
                    raise StreamError(f"the stream broke off: {piece}")
                self._frames.feed(piece)
            elif ev.kind == EVENT_HEADER:
                self.header = ev.json
            elif ev.kind == EVENT_END:
                self.summary = ev.json
            else:
                chunk = Chunk(index=ev.index, start=ev.start, end=ev.end, level=ev.level, kv=ev.kv, nbytes=ev.nbytes,
                              decoded_at=time.monotonic() - self._started)
                self.chunks.append(chunk)
                return chunk

    def kv(self) -> Optional[np.ndarray]:
        """Reads the rest of the stream; the KV of the contiguous prefix before the first
        recompute chunk, concatenated on the token axis (None when the first chunk is recompute)."""
        for _ in self:
            pass
        parts = []
        for c in self.chunks:
            if c.kv is None:
                break
            parts.append(c.kv)
        return np.concatenate(parts, axis=2) if parts else None

    @property
    def kv_tokens(self) -> int:
        """Tokens covered by kv(): the end of the contiguous run of decoded chunks."""
        end = 0
        for c in self.chunks:
            if c.kv is None:
                break
            end = c.end
        return end

    def close(self) -> None:
        self._done = True
        if self._resp is not None:
            try:
                if self._sock is not None:
                    self._sock.shutdown(socket.SHUT_RDWR)  # wakes a reader blocked in recv
            except OSError:
                pass
            # Drain so a reader waiting on a full queue sees the shut-down socket and ends.
            deadline = time.monotonic() + 10
            while self._reader.is_alive() and time.monotonic() < deadline:
                try:
                    self._pieces.get(timeout=0.05)
                except queue.Empty:
                    pass
            self._resp.close()
            self._resp = None
        if self._frames is not None:
            self._frames.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
