"""The embedded store of libkvstore_c (kvs_store_*) through the Python package: a store directory
used in the caller's process, no server; several processes on one store, as the CLI allows."""
from __future__ import annotations

import json

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pypkg_support import FIXTURE_FILES, PYTHON_DIR, import_package, run  # noqa: E402

kvstore = import_package()
from kvstore.errors import E_ARGUMENT, E_CORRUPT, CodecError  # noqa: E402
from kvstore.store import Space, Store  # noqa: E402

MODEL = "vllm/SmolLM2-test@sha256:" + "ab" * 32


def fixture():
    ctx = kvstore.read_safetensors(FIXTURE_FILES["F32"])  # 40 tokens of real SmolLM2 KV
    L, _, T, H, D = ctx.kv.shape
    return ctx, Space(model=MODEL, dtype="F32", layers=L, kv_heads=H, head_dim=D)


def test_put_lookup_read_round_trip(tmp_path):
    ctx, space = fixture()
    tokens = [int(t) for t in ctx.tokens]
    with Store(tmp_path / "s", create=True, chunk_tokens=16) as store:
        assert store.chunk_tokens == 16
        assert store.lookup(space, tokens) == (0, 0)
        report = store.put(space, ctx.kv, tokens, levels=[0])
        assert report["chunks"] == 3 and report["tokens"] == 40
        assert store.lookup(space, tokens) == (40, 3)          # two whole chunks and the partial last
        assert store.lookup(space, tokens[:35] + [7, 7]) == (32, 2)
        assert np.array_equal(store.read(space, tokens, 0, 3), ctx.kv)   # level 0: bit-exact
        assert np.array_equal(store.read(space, tokens, 1, 1), ctx.kv[:, :, 16:32])
        # Another tenant, model or dtype is another namespace: nothing there.
        for other in (Space(**{**space.__dict__, "tenant": "t2"}), Space(**{**space.__dict__, "model": MODEL + "x"})):
            assert store.lookup(other, tokens) == (0, 0)
        # Chunks not stored for the query are refused, not invented.
        with pytest.raises(CodecError) as e:
            store.read(space, tokens, 2, 2)
        assert e.value.code == E_ARGUMENT and "3 stored for the query" in str(e.value)


def test_bad_input_is_refused_and_loses_nothing(tmp_path):
    ctx, space = fixture()
    tokens = [int(t) for t in ctx.tokens]
    with Store(tmp_path / "s", create=True, chunk_tokens=16) as store:
        store.put(space, ctx.kv, tokens)
        with pytest.raises(CodecError, match="bytes of KV"):   # KV of another shape than the space says
            store.put(Space(**{**space.__dict__, "kv_heads": space.kv_heads + 1}), ctx.kv, tokens)
        with pytest.raises(CodecError, match="level 9"):
            store.put(space, ctx.kv, tokens, levels=[9])
        with pytest.raises(CodecError, match="dtype"):
            store.lookup(Space(**{**space.__dict__, "dtype": "F8"}), tokens)
        assert np.array_equal(store.read(space, tokens, 0, 3), ctx.kv)
    with pytest.raises(CodecError, match="no store"):
        Store(tmp_path / "missing")                              # read-only open of a mistyped path
    with pytest.raises(CodecError, match="16-token chunks"):
        Store(tmp_path / "s", chunk_tokens=32)


def test_corrupt_chunk_is_an_error_not_kv(tmp_path):
    ctx, space = fixture()
    tokens = [int(t) for t in ctx.tokens]
    root = tmp_path / "s"
    with Store(root, create=True, chunk_tokens=16) as store:
        store.put(space, ctx.kv, tokens)
        for blob in (root / "objects").rglob("*"):
            if blob.is_file():
                data = bytearray(blob.read_bytes())
                data[len(data) // 2] ^= 0xFF
                blob.write_bytes(bytes(data))
        assert store.lookup(space, tokens) == (40, 3)             # the index still lists them
        with pytest.raises(CodecError) as e:
            store.read(space, tokens, 0, 1)
        assert e.value.code == E_CORRUPT


CHILD = textwrap.dedent("""
    import sys, json
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from kvstore.store import Space, Store
    space = Space(**json.loads(sys.argv[3]))
    tokens = json.loads(sys.argv[4])
    kv = np.load(sys.argv[5])
    with Store(sys.argv[2], create=True, chunk_tokens=16) as store:
        print(store.put(space, kv, tokens)["chunks"])
""")


def test_processes_share_one_store(tmp_path):
    ctx, space = fixture()
    tokens = [int(t) for t in ctx.tokens]
    root = tmp_path / "s"
    np.save(tmp_path / "kv.npy", ctx.kv)
    with Store(root, create=True, chunk_tokens=16) as reader, Store(root) as second:   # one environment, shared
        r = subprocess.run([sys.executable, "-c", CHILD, str(PYTHON_DIR), str(root), json.dumps(space.__dict__),
                            json.dumps(tokens), str(tmp_path / "kv.npy")], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == "3", r.stderr
        assert reader.lookup(space, tokens) == (40, 3)            # what another process put, seen while open
        second.close()
        assert np.array_equal(reader.read(space, tokens, 0, 3), ctx.kv)


def test_the_cli_reads_what_the_embedded_store_put(tmp_path):
    ctx, space = fixture()
    tokens = [int(t) for t in ctx.tokens]
    root = tmp_path / "s"
    with Store(root, create=True, chunk_tokens=16) as store:
        store.put(space, ctx.kv, tokens)
    got = run("get", "--store", root, "--model", MODEL, "--tokens", json.dumps(tokens),
              "--output", tmp_path / "out.safetensors")
    assert "matched 40 of 40" in got.stdout + got.stderr
    assert np.array_equal(kvstore.read_safetensors(tmp_path / "out.safetensors").kv, ctx.kv)
