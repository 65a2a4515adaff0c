"""One vLLM process (CPU build, fp32, greedy) answering prompts, with or without kvstore's connector.

Runs in the vLLM venv (scripts/setup_vllm.sh) with the repository's python/ on PYTHONPATH. Reads a JSON
job from argv[1] (or a file of it) and prints one line per prompt, in order, `RESULT ` and JSON (vLLM
logs to stdout too):

    {"model": DIR, "store": DIR or null, "url": URL or null, "max_model_len": 4096, "max_tokens": 32,
     "levels": [0], "wait_stored": false, "prefix_caching": false, "warmup": false,
     "prompts": [{"prompt_token_ids": [...], "cache_salt": null, "ttft": false, "max_tokens": ...,
                  "wait_stored": ...}, ...]}
    -> {"token_ids": [...], "text": "...", "num_cached_tokens": N, "ttft_s": S}

Prompts run one after another (each its own generate call), so TTFT is measured per prompt: the
time of a 1-token generate of the same prompt. With "wait_stored", after each prompt the process
waits until the store holds the prompt's whole chunks (saves are put in the background).
"""
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")


def main() -> None:
    job = json.loads(open(sys.argv[1]).read() if sys.argv[1].endswith(".json") else sys.argv[1])
    from vllm import LLM, SamplingParams

    kwargs = dict(model=job["model"], dtype="float32", max_model_len=job.get("max_model_len", 4096),
                  enforce_eager=True, enable_prefix_caching=job.get("prefix_caching", False),
                  # one step per prompt: a whole prompt is prefilled (and so saved) at once
                  max_num_batched_tokens=job.get("max_model_len", 4096), seed=0)
    extra = {k: job[k] for k in ("store", "url", "levels", "slo_ms", "token", "tenant", "chunk_tokens")
             if job.get(k) is not None}
    if extra:
        from vllm.config import KVTransferConfig
        kwargs["kv_transfer_config"] = KVTransferConfig(
            kv_connector="KVStoreConnector", kv_connector_module_path="kvstore.vllm", kv_role="kv_both",
            kv_load_failure_policy="recompute", kv_connector_extra_config=extra)
    t0 = time.monotonic()
    llm = LLM(**kwargs)
    print(json.dumps({"loaded_s": time.monotonic() - t0}), file=sys.stderr, flush=True)
    first = SamplingParams(temperature=0.0, max_tokens=1)
    if job.get("warmup"):  # the first forward of a process pays one-time costs; keep them out of TTFT
        llm.generate([{"prompt_token_ids": [1, 2, 3, 4] * 16}], first, use_tqdm=False)
    for p in job["prompts"]:
        prompt = {"prompt_token_ids": p["prompt_token_ids"]}
        if p.get("cache_salt"):
            prompt["cache_salt"] = p["cache_salt"]
        ttft, out = None, None
        max_tokens = p.get("max_tokens", job.get("max_tokens", 32))
        if p.get("ttft"):
            t = time.monotonic()
            out = llm.generate([prompt], first, use_tqdm=False)[0]
            ttft = time.monotonic() - t
        if out is None or max_tokens != 1:
            greedy = SamplingParams(temperature=0.0, max_tokens=max_tokens)
            out = llm.generate([prompt], greedy, use_tqdm=False)[0]
        if p.get("wait_stored", job.get("wait_stored")) and (job.get("store") or job.get("url")):
            wait_stored(job, p)
        print("RESULT " + json.dumps({"token_ids": list(out.outputs[0].token_ids), "text": out.outputs[0].text,
                          "num_cached_tokens": out.num_cached_tokens, "prompt_tokens": len(p["prompt_token_ids"]),
                          "ttft_s": ttft}), flush=True)


def wait_stored(job: dict, p: dict, timeout: float = 300.0) -> None:
    """Until the embedded store holds the prompt's whole chunks (the connector saves in the background)."""
    from kvstore.store import Store
    from kvstore.vllm.connector import KVStoreConnector  # noqa: F401  (the package imports)
    from kvstore.vllm.identity import model_id
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(job["model"])
    cfg = getattr(cfg, "text_config", cfg)
    from kvstore.store import Space
    space = Space(model=model_id(job["model"]), dtype="F32", layers=cfg.num_hidden_layers,
                  kv_heads=cfg.num_key_value_heads, head_dim=getattr(cfg, "head_dim", None) or
                  cfg.hidden_size // cfg.num_attention_heads, tenant=p.get("cache_salt") and f"/{p['cache_salt']}")
    ids = p["prompt_token_ids"]
    if job.get("url"):
        from kvstore.client import Client
        client = Client(job["url"], token=job.get("token"))
        want = len(ids) // job.get("chunk_tokens", 256) * job.get("chunk_tokens", 256)
        stored = lambda: client.lookup(ids, model=space.model, dtype=space.dtype)["matched_tokens"]  # noqa: E731
    else:
        store = Store(job["store"], create=True)
        want = len(ids) // store.chunk_tokens * store.chunk_tokens
        stored = lambda: store.lookup(space, ids)[0]  # noqa: E731
    deadline = time.monotonic() + timeout
    while stored() < want:
        if time.monotonic() > deadline:
            raise SystemExit(f"the store did not get {want} tokens in {timeout:.0f} s")
        time.sleep(0.2)


if __name__ == "__main__":
    main()
