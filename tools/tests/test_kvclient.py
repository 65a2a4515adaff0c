"""End-to-end: the kvstore server binary on a loopback port, driven by tools/kvclient.py (the CLI
over the `kvstore` Python package). JSON responses are validated against schemas/openapi.yaml when
PyYAML and jsonschema are installed. Skipped when the binary or libkvstore_c is not built.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pypkg_support import FIXTURE_FILES, ROOT, import_package, same_bits, serve  # noqa: E402

kvstore = import_package()
FIXTURE = FIXTURE_FILES["F16"]


@pytest.fixture(scope="module")
def server():
    with serve() as url:
        yield url


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "kvclient.py"), *args],
                          capture_output=True, text=True, timeout=120)


def schema(name):
    yaml = pytest.importorskip("yaml")
    jsonschema = pytest.importorskip("jsonschema")
    spec = yaml.safe_load((ROOT / "schemas" / "openapi.yaml").read_text())
    s = dict(spec["components"]["schemas"][name])
    s["components"] = spec["components"]
    return lambda value: jsonschema.validate(value, s)


def test_cli_put_lookup_stream(server, tmp_path):
    source = kvstore.read_safetensors(FIXTURE)
    tokens = source.tokens.tolist()
    r = cli(server, "put", str(FIXTURE), "--levels", "0,4")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["tokens"] == 96 and report["chunks"] == 3
    (tmp_path / "q.json").write_text(json.dumps(tokens + [5, 6]))
    r = cli(server, "lookup", str(tmp_path / "q.json"))
    found = json.loads(r.stdout)
    assert found["matched_tokens"] == 96 and [c["end"] for c in found["chunks"]] == [32, 64, 96]
    assert [lv["level"] for lv in found["chunks"][0]["levels"]] == [0, 4]

    for level in ("0", "4"):
        r = cli(server, "stream", str(tmp_path / "q.json"), "--level", level, "--slo-ms", "60000",
                "-o", str(tmp_path / "kv.npy"))
        assert r.returncode == 0, r.stderr
        assert r.stdout.count(f" L{level} ") == 3 and "96 tokens of KV" in r.stdout
        kv = np.load(tmp_path / "kv.npy")
        if level == "0":
            assert same_bits(kv, source.kv)
        else:
            assert kv.shape == source.kv.shape and not same_bits(kv, source.kv)

    (tmp_path / "miss.json").write_text("[999999, 1, 2]")
    r = cli(server, "stream", str(tmp_path / "miss.json"))
    assert r.returncode == 3 and "no stored prefix" in r.stdout
    r = cli(server, "put", str(tmp_path / "miss.json"))
    assert r.returncode == 1 and "server answered 400: body is not a safetensors context" in r.stderr


def test_responses_follow_the_openapi_schemas(server):
    client = kvstore.Client(server)
    report = client.put(FIXTURE)
    tokens = kvstore.read_safetensors(FIXTURE).tokens
    found = client.lookup(tokens)
    with client.stream(tokens, slo_ms=10_000) as s:
        list(s)
    miss = client.lookup([999_999, 1, 2])
    assert miss == {"chunks": [], "matched_tokens": 0, "query_tokens": 3}
    for validate, value in [(schema("PutReport"), report), (schema("LookupResult"), found),
                            (schema("LookupResult"), miss),
                            (schema("StreamHeader"), s.header), (schema("StreamSummary"), s.summary)]:
        validate(value)
