"""Exceptions of the kvstore package. Every error is a KVStoreError."""
from __future__ import annotations


class KVStoreError(Exception):
    """Base class: anything the package or the library refused."""


class CodecError(KVStoreError):
    """The library refused an input (truncated, corrupt, unsupported, over a limit, bad argument).

    `code` is the KVS_E_* value of include/kvstore.h."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


class StreamError(KVStoreError):
    """A malformed, out-of-order or cut-off frame stream, or a failed connection."""


class ServerError(KVStoreError):
    """The server answered an error: `status` (HTTP status; 500 for an error frame mid-stream) and
    `message`, the server's own words."""

    def __init__(self, status: int, message: str):
        super().__init__(f"server answered {status}: {message}")
        self.status = status
        self.message = message


# KVS_E_* codes (include/kvstore.h).
E_ARGUMENT, E_TRUNCATED, E_CORRUPT, E_UNSUPPORTED, E_LIMIT, E_STREAM, E_SERVER, E_INTERNAL = range(-1, -9, -1)


def error_for_code(code: int, message: str) -> KVStoreError:
    if code == E_STREAM:
        return StreamError(message)
    if code == E_SERVER:
        return ServerError(500, message)
    return CodecError(code, message)
