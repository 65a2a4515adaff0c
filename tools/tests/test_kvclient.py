"""End-to-end: the kvstore server binary on a loopback port, driven by tools/kvclient.py.

The binary is $KVSTORE_BIN (default .build/debug/kvstore); the test is skipped when it is absent.
JSON responses are validated against schemas/openapi.yaml when PyYAML and jsonschema are installed.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import kvclient  # noqa: E402

FIXTURE = ROOT / "Tests" / "Fixtures" / "smollm2_ctx96_f16.safetensors"
BIN = Path(os.environ.get("KVSTORE_BIN", ROOT / ".build" / "debug" / "kvstore"))


def load_safetensors(path):
    data = path.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        dt = {"F16": "<f2", "BF16": "<u2", "F32": "<f4", "I32": "<i4"}[e["dtype"]]
        b, end = e["data_offsets"]
        out[name] = np.frombuffer(data[base + b:base + end], dtype=dt).reshape(e["shape"])
    return out


@pytest.fixture(scope="module")
def server():
    if not BIN.exists():
        pytest.skip(f"kvstore binary not built at {BIN} (set KVSTORE_BIN)")
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen([str(BIN), "serve", "--store", f"{tmp}/store", "--listen", "127.0.0.1:0",
                                 "--chunk-tokens", "32", "--port-file", str(port_file)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                if proc.poll() is not None:
                    pytest.fail(f"server exited: {proc.stderr.read().decode()}")
                if time.monotonic() > deadline:
                    pytest.fail("server did not start within 30 s")
                time.sleep(0.05)
            yield f"http://127.0.0.1:{int(port_file.read_text())}"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def schema(name):
    yaml = pytest.importorskip("yaml")
    jsonschema = pytest.importorskip("jsonschema")
    spec = yaml.safe_load((ROOT / "schemas" / "openapi.yaml").read_text())
    resolver_root = {"components": spec["components"]}
    s = dict(spec["components"]["schemas"][name])
    s["components"] = resolver_root["components"]
    return lambda value: jsonschema.validate(value, s)


def test_put_lookup_stream_lossless_is_bit_exact(server):
    st = load_safetensors(FIXTURE)
    kv, tokens = st["kv"], [int(t) for t in st["tokens"]]
    report = kvclient.put(server, FIXTURE.read_bytes())
    assert report["tokens"] == 96 and report["chunks"] == 3

    found = kvclient.lookup(server, tokens + [5, 6])
    assert found["matched_tokens"] == 96 and [c["end"] for c in found["chunks"]] == [32, 64, 96]
    assert all(c["levels"][0]["level"] == 0 for c in found["chunks"])

    result = kvclient.stream(server, tokens, slo_ms=10_000, level=0)
    assert [c["level"] for c in result["chunks"]] == [0, 0, 0]
    got = kvclient.prefix_kv(result)
    assert got.shape == kv.shape and got.dtype == kv.dtype
    assert np.array_equal(got.view(np.uint16), kv.view(np.uint16))  # bit-exact, NaN-safe

    for validate, value in [(schema("PutReport"), report), (schema("LookupResult"), found),
                            (schema("StreamHeader"), result["header"]), (schema("StreamSummary"), result["summary"])]:
        validate(value)


def test_miss_and_bad_requests(server):
    assert kvclient.stream(server, [999_999, 1, 2]) is None
    miss = kvclient.lookup(server, [999_999, 1, 2])
    assert miss == {"chunks": [], "matched_tokens": 0, "query_tokens": 3}
    with pytest.raises(kvclient.KVClientError, match=r"server answered 400: body is not a safetensors context"):
        kvclient.put(server, b"\x00" * 64)
    with pytest.raises(kvclient.KVClientError, match=r"server answered 400: the token query is empty"):
        kvclient.lookup(server, [])


def test_decode_rejects_lossy_and_garbage():
    with pytest.raises(kvclient.KVClientError, match="not a kvstore chunk container"):
        kvclient.decode_chunk(b"X" * 64)
    with pytest.raises(kvclient.KVClientError, match="shorter than its header"):
        kvclient.decode_chunk(b"KVCK")
