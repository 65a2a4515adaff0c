#!/usr/bin/env python3
"""Streaming decode throughput: the Python package (python/, libkvstore_c) vs `kvstore get --remote`
on the same stream from one `kvstore serve` on loopback.

usage: bench_pyclient.py CONTEXT.safetensors [--levels 0,2,4] [--runs 5] [--bin .build/release/kvstore]
                         [--lib .build/release/libkvstore_c.so]

Stores the context (256-token chunks, levels 0-4) in a fresh store, then for each pinned level
runs, `--runs` times in turn: `kvstore get --remote` (a new process each time), the Python package
in a new process each time (the same footing: cold caches, first-use tables), and the Python package
in this process (warm after its first run). Every clock starts before connecting and stops when the
last chunk has been decoded (Swift: `decodedMs` of `get --remote --json`; Python: the last chunk's
`decoded_at`); none counts concatenating or writing the result. Prints one line per run and the
medians. Build first: swift build -c release --product kvstore_c; swift build -c release --product kvstore.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_stream(url: str, context: str, level: int) -> None:
    """A fresh process's single stream (the cold Python figure): prints decoded and last-byte ms."""
    sys.path.insert(0, str(ROOT / "python"))
    import kvstore
    tokens = kvstore.read_safetensors(context).tokens.tolist()
    with kvstore.Client(url).stream(tokens, slo_ms=60000, level=level) as s:
        chunks = list(s)
    print(json.dumps({"decodedMs": chunks[-1].decoded_at * 1000, "ttlbMs": s.last_byte * 1000, "bytes": s.nbytes}))


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--one-stream":
        one_stream(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("context")
    ap.add_argument("--levels", default="0,2,4")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--bin", default=str(ROOT / ".build" / "release" / "kvstore"))
    ap.add_argument("--lib", default=str(ROOT / ".build" / "release" / "libkvstore_c.so"))
    a = ap.parse_args()
    os.environ["KVSTORE_C_LIB"] = a.lib
    sys.path.insert(0, str(ROOT / "python"))
    import kvstore

    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        subprocess.run([a.bin, "put", a.context, "--store", f"{tmp}/store", "--chunk-tokens", "256",
                        "--levels", "0,1,2,3,4"], check=True, stdout=subprocess.DEVNULL)
        server = subprocess.Popen([a.bin, "serve", "--store", f"{tmp}/store", "--listen", "127.0.0.1:0",
                                   "--port-file", str(port_file)], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 60
            while not (port_file.exists() and port_file.read_text().strip()):
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("server did not start")
                time.sleep(0.05)
            url = f"http://127.0.0.1:{int(port_file.read_text())}"
            client = kvstore.Client(url)
            tokens = kvstore.read_safetensors(a.context).tokens.tolist()
            print(f"context {Path(a.context).name}: {len(tokens)} tokens; library {kvstore.library_path}")
            for level in [int(x) for x in a.levels.split(",")]:
                swift, cold, python = [], [], []
                for run in range(a.runs):
                    r = subprocess.run([a.bin, "get", "--remote", url, "--tokens", a.context, "--level", str(level),
                                        "--slo-ms", "60000", "--json", "-o", f"{tmp}/out.safetensors"],
                                       check=True, capture_output=True, text=True)
                    rep = json.loads(r.stdout)
                    swift.append((rep["decodedMs"], rep["ttlbMs"], rep["bytes"]))
                    r = subprocess.run([sys.executable, __file__, "--one-stream", url, a.context, str(level)],
                                       check=True, capture_output=True, text=True)
                    rep = json.loads(r.stdout)
                    cold.append((rep["decodedMs"], rep["ttlbMs"], rep["bytes"]))
                    with client.stream(tokens, slo_ms=60000, level=level) as s:
                        chunks = list(s)
                    assert s.kv_tokens == len(tokens) and all(c.level == level for c in chunks)
                    python.append((chunks[-1].decoded_at * 1000, s.last_byte * 1000, s.nbytes))
                    print(f"L{level} run {run + 1}: decoded (last byte) ms: swift {swift[-1][0]:6.1f} ({swift[-1][1]:6.1f}), "
                          f"python new process {cold[-1][0]:6.1f} ({cold[-1][1]:6.1f}), "
                          f"python in-process {python[-1][0]:6.1f} ({python[-1][1]:6.1f})", flush=True)
                h = s.header
                raw = len(tokens) * h["shape"][0] * 2 * h["shape"][1] * h["shape"][2] * (4 if h["dtype"] == "F32" else 2)
                sm, cm, pm = (statistics.median(x[0] for x in xs) for xs in (swift, cold, python))
                print(f"L{level} median of {a.runs}: {swift[0][2] / 2**20:.1f} MiB on the wire, {raw / 2**20:.1f} MiB decoded; "
                      f"swift {sm:.1f} ms ({raw / sm / 1e3:.0f} MB/s), python new process {cm:.1f} ms ({raw / cm / 1e3:.0f} MB/s, "
                      f"time x{cm / sm:.2f}), python in-process {pm:.1f} ms ({raw / pm / 1e3:.0f} MB/s, time x{pm / sm:.2f})")
        finally:
            server.terminate()
            server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
