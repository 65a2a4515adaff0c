"""Shared by the tests of the `kvstore` Python package: the package from this checkout, the kvstore
binary, a real `kvstore serve`, and the real SmolLM2 KV fixtures.

The library is $KVSTORE_C_LIB (scripts/test.sh points it at the debug build), else
.build/{release,debug}/libkvstore_c.so; the binary is $KVSTORE_BIN (default .build/debug/kvstore).
Tests skip when either is not built.
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYTHON_DIR = ROOT / "python"
FIXTURES = ROOT / "Tests" / "Fixtures"
BIN = Path(os.environ.get("KVSTORE_BIN", ROOT / ".build" / "debug" / "kvstore"))
# Real SmolLM2-135M KV: 96 tokens in F16, 40 tokens in BF16 and F32.
FIXTURE_FILES = {"F16": FIXTURES / "smollm2_ctx96_f16.safetensors",
                 "BF16": FIXTURES / "smollm2_ctx40_bf16.safetensors",
                 "F32": FIXTURES / "smollm2_ctx40_f32.safetensors"}


def import_package():
    """The package from python/ in this checkout (skips when its library is not built)."""
    if str(PYTHON_DIR) not in sys.path:
        sys.path.insert(0, str(PYTHON_DIR))
    try:
        import kvstore
    except Exception as e:  # noqa: BLE001 - the library is missing or unloadable
        if "libkvstore_c not found" in str(e):
            pytest.skip(str(e))
        raise
    return kvstore


def require_binary() -> Path:
    if not BIN.exists():
        pytest.skip(f"kvstore binary not built at {BIN} (set KVSTORE_BIN)")
    return BIN


def run(*args, **kw) -> subprocess.CompletedProcess:
    """Runs the kvstore binary; fails the test with its stderr when it fails."""
    r = subprocess.run([str(require_binary()), *map(str, args)], capture_output=True, text=True, timeout=300, **kw)
    assert r.returncode == 0, f"kvstore {' '.join(map(str, args))} failed: {r.stderr}"
    return r


@contextlib.contextmanager
def serve(*extra: str, chunk_tokens: int = 32, store: Optional[Path] = None):
    """A real `kvstore serve` on a free loopback port with a fresh store (at `store` if given, for
    the test to inspect); yields its URL."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen([str(require_binary()), "serve", "--store", str(store or f"{tmp}/store"), "--listen", "127.0.0.1:0",
                                 "--chunk-tokens", str(chunk_tokens), "--port-file", str(port_file), *extra],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text().strip():
                if proc.poll() is not None:
                    pytest.fail(f"server exited: {proc.stderr.read().decode()}")
                if time.monotonic() > deadline:
                    pytest.fail("server did not start within 60 s")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{int(port_file.read_text())}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def same_bits(a, b) -> bool:
    """Bit-identical arrays (NaN-safe): same shape, same element size, same bytes."""
    return a.shape == b.shape and a.dtype.itemsize == b.dtype.itemsize and a.tobytes() == b.tobytes()
