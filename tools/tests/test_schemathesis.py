"""schemathesis with every check against the real `kvstore serve`, with and without auth (issue #11).

Bounded in examples and time so the suite's length does not depend on the machine; a failure prints
schemathesis' own report.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_server_hardening import OPERATOR_TOKEN, ROOT, TENANT_TOKEN, running_server  # noqa: E402

SPEC = ROOT / "schemas" / "openapi.yaml"
CONFIG = ROOT / "schemas" / "schemathesis.toml"


def run_schemathesis(port: int, headers: list[str]) -> subprocess.CompletedProcess:
    exe = shutil.which("schemathesis") or shutil.which("st")
    if exe is None:
        pytest.fail("schemathesis is not installed (scripts/setup.sh installs it)")
    args = [exe, "--config-file", str(CONFIG), "run", str(SPEC), "--url", f"http://127.0.0.1:{port}", "--checks", "all",
            "--max-examples", "25", "--max-time", "120", "--workers", "1", "--seed", "11",
            "--request-timeout", "60", "--no-color"]
    for h in headers:
        args += ["--header", h]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("auth", [False, True], ids=["open", "auth"])
def test_schemathesis_finds_no_failure(tmp_path, auth):
    with running_server(tmp_path, auth=auth) as (port, _):
        headers = [f"Authorization: Bearer {TENANT_TOKEN}"] if auth else []
        r = run_schemathesis(port, headers)
    tail = "\n".join(r.stdout.splitlines()[-60:])
    assert r.returncode == 0, f"schemathesis failed:\n{tail}\n{r.stderr[-2000:]}"
    assert "passed" in r.stdout, tail
