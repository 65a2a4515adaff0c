"""kvstore's vLLM connector on vLLM's CPU build (scripts/setup_vllm.sh), through real vLLM processes.

Level 0 is exact through vLLM: with vLLM's own prefix caching off, process A answers a document and
a question and stores it; process B answers another question on the same document cold (a cache
salt of its own: a store miss) and restored from kvstore, and the two greedy answers are the same
tokens, with num_cached_tokens showing the restored prefix. Faults: a corrupt stored chunk makes
vLLM recompute, with the same answer. The embedded store itself is tested without vLLM.

Skips when the vLLM venv or its converted models are absent (scripts/setup_vllm.sh makes them).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pypkg_support import PYTHON_DIR, ROOT, import_package  # noqa: E402

CACHE = Path(os.environ.get("KVSTORE_CACHE") or Path.home() / ".cache/kvstore")
VENV_PYTHON = CACHE / "vllm-venv" / "bin" / "python"
MODELS = CACHE / "vllm-models"
TEXT = ROOT / "tools" / "texts" / "emma_ch1.txt"
DOC_TOKENS = 1280  # 5 chunks of 256
QUESTIONS = ["\n\nQuestion: Who is the main character of this story, and what is she like?\nAnswer:",
             "\n\nQuestion: Where does the story take place?\nAnswer:"]


def vllm_python(model: str) -> Path:
    if not VENV_PYTHON.exists() or not (MODELS / model / "config.json").exists():
        pytest.skip(f"no vLLM venv with {model} under {CACHE} (scripts/setup_vllm.sh)")
    return VENV_PYTHON


def prompts(model: str) -> list[list[int]]:
    """The document's first DOC_TOKENS tokens (after BOS for Gemma), then each question."""
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(MODELS / model / "tokenizer.json"))
    bos = [json.loads((MODELS / model / "config.json").read_text())["bos_token_id"]] if model == "gemma3" else []
    doc = (bos + tok.encode(TEXT.read_text(), add_special_tokens=False).ids)[:DOC_TOKENS]
    return [doc + tok.encode(q, add_special_tokens=False).ids for q in QUESTIONS]


def run_vllm(model: str, job: dict, tmp: Path, name: str) -> tuple[list[dict], str]:
    """One vLLM process (tools/vllm_run.py): its results and its log."""
    job = {"model": str(MODELS / model), "max_model_len": 2048, "max_tokens": 24, **job}
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(job))
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "HF_HUB_OFFLINE": "1", "KVSTORE_C_LIB": str(import_package().library_path)}
    r = subprocess.run([str(vllm_python(model)), str(ROOT / "tools" / "vllm_run.py"), str(path)], env=env,
                       capture_output=True, text=True, timeout=1800)
    log = r.stdout + r.stderr
    (tmp / f"{name}.log").write_text(log)
    assert r.returncode == 0, f"vLLM process {name} failed:\n{log[-4000:]}"
    results = [json.loads(line[len("RESULT "):]) for line in r.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == len(job["prompts"]), log[-4000:]
    return results, log


def level0_exact(model: str, tmp: Path) -> None:
    store = tmp / "store"
    q1, q2 = prompts(model)
    # A: the document with the first question, stored.
    (a,), log_a = run_vllm(model, {"store": str(store), "wait_stored": True,
                                   "prompts": [{"prompt_token_ids": q1}]}, tmp, "A")
    assert a["num_cached_tokens"] == 0, "A found something in a new store"
    assert "kvstore: stored 1280 tokens" in log_a, log_a[-3000:]
    # B: the second question cold (its own cache salt: another tenant, a miss), then restored.
    (cold, warm), log_b = run_vllm(model, {"store": str(store), "prompts": [
        {"prompt_token_ids": q2, "cache_salt": "cold"}, {"prompt_token_ids": q2}]}, tmp, "B")
    assert cold["num_cached_tokens"] == 0
    assert warm["num_cached_tokens"] == DOC_TOKENS, (warm, log_b[-3000:])
    assert "kvstore: loaded 1280 tokens" in log_b
    assert warm["token_ids"] == cold["token_ids"], (cold["text"], warm["text"])
    assert len(cold["token_ids"]) > 4


def test_level0_exact_smollm2(tmp_path):
    level0_exact("smollm2", tmp_path)


def test_level0_exact_gemma3_hybrid(tmp_path):
    level0_exact("gemma3", tmp_path)
    log = (tmp_path / "B.log").read_text()
    # vLLM kept its hybrid KV manager on (the connector supports HMA): the sliding-window layers and the
    # full-attention layers are in separate KV cache groups, not one.
    groups = re.search(r"kvstore: worker connector .* in (\d+) KV cache groups", log)
    assert groups and int(groups.group(1)) > 1, log[-3000:]


LAYOUT_CHILD = r'''
import importlib.util, sys, torch
spec = importlib.util.spec_from_file_location("layout", sys.argv[1])
layout = importlib.util.module_from_spec(spec); spec.loader.exec_module(layout)
nb, H, bs, D = 6, 3, 128, 64
layer = torch.zeros(nb, H, bs, 2 * D)
kv = torch.randn(2, 256, H, D)
layout.write_blocks(layer, [4, 2], kv)
# vLLM's CPU layout: in block b, head h, K of offset o, dim d at d * bs + o (transposed), V at bs * D + o * D + d.
flat = layer.view(nb, H, 2 * bs * D)
for t, h, d in [(130, 2, 7), (0, 0, 0), (255, 1, 63)]:
    b, o = [4, 2][t // bs], t % bs
    assert flat[b, h, d * bs + o] == kv[0, t, h, d] and flat[b, h, bs * D + o * D + d] == kv[1, t, h, d]
back, real = layout.read_blocks(layer, [4, 2], 256)
assert real and torch.equal(back, kv)
back, real = layout.read_blocks(layer, [0, 2], 256)   # a null block reads as zeros, and says so
assert not real and torch.equal(back[:, 128:], kv[:, 128:]) and not back[:, :128].any()
other = torch.zeros_like(layer)
layout.write_blocks(other, [0, 5], kv)                 # a null block is never written
assert not other[0].any() and torch.equal(layout.read_blocks(other, [0, 5], 256)[0][:, 128:], kv[:, 128:])
print("ok")
'''


def test_cpu_block_layout_round_trip():
    """The one conversion between kvstore's [2, tokens, heads, dim] and vLLM's CPU blocks, element by element."""
    python = vllm_python("smollm2")
    r = subprocess.run([str(python), "-c", LAYOUT_CHILD, str(PYTHON_DIR / "kvstore" / "vllm" / "layout.py")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_corrupt_chunk_is_recomputed_smollm2(tmp_path):
    """A stored chunk that fails its checksum is never loaded: vLLM recomputes the prefix (the
    load-error path) and answers as it does cold, and the log says so."""
    store = tmp_path / "store"
    q1, q2 = prompts("smollm2")
    run_vllm("smollm2", {"store": str(store), "wait_stored": True, "max_tokens": 1,
                         "prompts": [{"prompt_token_ids": q1}]}, tmp_path, "A")
    blobs = [b for b in (store / "objects").rglob("*") if b.is_file()]
    assert len(blobs) == DOC_TOKENS // 256
    victim = sorted(blobs)[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x55
    victim.write_bytes(bytes(data))
    (cold, warm), log = run_vllm("smollm2", {"store": str(store), "prompts": [
        {"prompt_token_ids": q2, "cache_salt": "cold"}, {"prompt_token_ids": q2}]}, tmp_path, "B")
    assert "kvstore: request" in log and "1280 of" in log            # the lookup found the prefix
    assert re.search(r"kvstore: loading 1280 tokens for request \S+ failed, vLLM recomputes them: .*corrupt", log), log[-3000:]
    assert "kvstore: loaded" not in log
    assert warm["token_ids"] == cold["token_ids"], (cold["text"], warm["text"])


def test_two_vllm_processes_share_one_kvstore_serve_smollm2(tmp_path):
    """Through a `kvstore serve` on loopback (`url`): process B restores what process A computed,
    streamed at level 0, and answers as it does cold."""
    from pypkg_support import require_binary, serve
    require_binary()
    q1, q2 = prompts("smollm2")
    with serve(chunk_tokens=256) as url:
        run_vllm("smollm2", {"url": url, "wait_stored": True, "max_tokens": 1,
                             "prompts": [{"prompt_token_ids": q1}]}, tmp_path, "A")
        (cold, warm), log = run_vllm("smollm2", {"url": url, "prompts": [
            {"prompt_token_ids": q2, "cache_salt": "cold"}, {"prompt_token_ids": q2}]}, tmp_path, "B")
    assert "kvstore: worker connector on http://127.0.0.1:" in log
    assert cold["num_cached_tokens"] == 0
    assert warm["num_cached_tokens"] == DOC_TOKENS and "kvstore: loaded 1280 tokens" in log, log[-3000:]
    assert warm["token_ids"] == cold["token_ids"], (cold["text"], warm["text"])
