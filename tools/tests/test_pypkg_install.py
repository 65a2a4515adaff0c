"""`pip install` of the package (python/) into a fresh virtual environment, then its example
against a real `kvstore serve`, run by the environment's Python from outside the checkout.

The build step reuses the library the rest of the suite loads ($KVSTORE_C_LIB, which scripts/test.sh
points at the debug build) instead of compiling a release one, so CI compiles the Swift package
once. `--system-site-packages` lends the environment numpy (and setuptools/wheel for the build).
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pypkg_support import FIXTURE_FILES, PYTHON_DIR, import_package, require_binary, serve  # noqa: E402

kvstore = import_package()


def test_pip_install_into_a_fresh_venv_then_the_example(tmp_path):
    require_binary()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KVSTORE_C_LIB")}
    # With wheel installed (scripts/setup.sh) the build needs no network; otherwise pip fetches its build deps.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("wheel") else []
    r = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-input", "-q", *isolation, str(PYTHON_DIR)],
                       env={**env, "KVSTORE_C_LIB": kvstore.library_path}, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr

    # The installed package carries its own copy of the library: no env var, run from elsewhere.
    r = subprocess.run([str(py), "-c", "import kvstore; print(kvstore.library_path); print(kvstore.library_version)"],
                       env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lib_path = Path(r.stdout.splitlines()[0])
    assert lib_path.is_relative_to(venv) and lib_path.name == "libkvstore_c.so", r.stdout

    with serve() as url:
        r = subprocess.run([str(py), str(PYTHON_DIR / "examples" / "stream_prefix.py"), url,
                            str(FIXTURE_FILES["F16"]), "--level", "2", "--slo-ms", "60000"],
                           env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert str(venv) in out.splitlines()[0]
    assert "lookup: 96 of 99 tokens stored" in out
    assert out.count("level 2, kv (30, 2, 32, 3, 64) float16") == 3
    assert "96 tokens of KV" in out and "finite: True" in out
