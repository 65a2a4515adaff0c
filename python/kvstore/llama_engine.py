"""A minimal in-process llama.cpp engine (llama-cpp-python's low-level ctypes bindings) for the
examples and tools: one context, one sequence, batched prefill, logits, sequence state out and in.
Put llama-cpp-python's source directory on PYTHONPATH and set LLAMA_CPP_LIB_PATH to the directory
of libllama.so (scripts/build_llama.sh builds both; docs/llama.md).
"""
from __future__ import annotations

import ctypes
import importlib.util
import sys
import types

import numpy as np

# llama-cpp-python's low-level ctypes bindings only: its package __init__ also imports the
# high-level API, which needs diskcache and jinja2.
if "llama_cpp" not in sys.modules:
    _spec = importlib.util.find_spec("llama_cpp")
    if _spec is None:
        raise ImportError("llama_cpp not found: put llama-cpp-python's source directory on PYTHONPATH")
    _pkg = types.ModuleType("llama_cpp")
    _pkg.__path__ = list(_spec.submodule_search_locations)
    sys.modules["llama_cpp"] = _pkg
from llama_cpp import llama_cpp as L  # noqa: E402

BATCH = 512

# llama.cpp logs every tensor it loads; errors (level 4 = GGML_LOG_LEVEL_ERROR) still reach stderr.
@L.llama_log_callback
def _quiet_log(level: int, text: bytes, _user: object) -> None:
    if level == 4:
        sys.stderr.write(text.decode("utf-8", "replace"))


def dequantize_gguf(src: str, dst: str, threads: int = 1) -> str:
    """Writes `src` with every tensor dequantized to F32 (llama_model_quantize, LLAMA_FTYPE_ALL_F32)
    unless `dst` exists. With an F32 KV cache, that model runs without quantized activations: the
    float oracle (llama.cpp quantizes activations before a quantized weight's matmul)."""
    import os
    if os.path.exists(dst):
        return dst
    L.llama_log_set(_quiet_log, None)
    L.llama_backend_init()
    p = L.llama_model_quantize_default_params()
    p.nthread, p.ftype, p.allow_requantize, p.pure = threads, 0, True, True  # 0: LLAMA_FTYPE_ALL_F32
    tmp = dst + ".part"
    if L.llama_model_quantize(src.encode(), tmp.encode(), ctypes.byref(p)) != 0:
        raise RuntimeError(f"llama.cpp could not dequantize {src}")
    os.replace(tmp, dst)
    return dst


class _GGMLTensor(ctypes.Structure):
    """The head of struct ggml_tensor (ggml.h at the pinned commit) up to its name."""
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4), ("op", ctypes.c_int), ("op_params", ctypes.c_int32 * 16),
                ("flags", ctypes.c_int32), ("src", ctypes.c_void_p * 10), ("view_src", ctypes.c_void_p),
                ("view_offs", ctypes.c_size_t), ("data", ctypes.c_void_p), ("name", ctypes.c_char * 64)]


_GGML_TYPE_F32, _GGML_OP_ROPE = 0, 48  # enum ggml_type, enum ggml_op at the pinned commit


class QueryEnergy:
    """Watches llama.cpp's graph (cb_eval) for each layer's queries after RoPE (tensors "Qcur-<layer>"
    made by a ROPE op) and sums every query channel's square over the tokens decoded while `on`.
    The key channels' sensitivity: an error e in key channel i moves an attention logit by q_i e."""

    def __init__(self):
        self.on = False
        self.sums: dict[int, np.ndarray] = {}  # layer -> [n_head, head_dim] float64
        self.tokens: dict[int, int] = {}
        self.callback = L.ggml_backend_sched_eval_callback(self._observe)

    def _observe(self, t, ask, _user) -> bool:
        if not self.on:
            return not ask  # ask: do not watch; else: go on computing
        x = _GGMLTensor.from_address(t)
        if not (x.op == _GGML_OP_ROPE and x.name.startswith(b"Qcur-")):
            return not ask
        if ask:
            return True
        d, h, n = x.ne[0], x.ne[1], x.ne[2]
        if x.type != _GGML_TYPE_F32 or x.nb[0] != 4 or x.nb[1] != 4 * d or x.nb[2] != 4 * d * h or x.ne[3] != 1:
            raise RuntimeError(f"unexpected query tensor {x.name!r}: type {x.type}, ne {list(x.ne)}, nb {list(x.nb)}")
        q = np.ctypeslib.as_array(ctypes.cast(x.data, ctypes.POINTER(ctypes.c_float)), shape=(n, h, d))
        layer = int(x.name[5:])
        self.sums[layer] = self.sums.get(layer, 0) + (q.astype(np.float64) ** 2).sum(axis=0)
        self.tokens[layer] = self.tokens.get(layer, 0) + n
        return True

    def pair_energy(self, kv_heads: int) -> np.ndarray:
        """[layers, kv_heads, head_dim / 2]: per KV head, the mean query energy of each channel pair
        (2i, 2i+1), over the tokens and the query heads that read that KV head (head h reads h // group)."""
        layers = sorted(self.sums)
        if not layers or layers != list(range(len(layers))):
            raise RuntimeError(f"queries seen for layers {layers}")
        out = []
        for layer in layers:
            e = self.sums[layer] / self.tokens[layer]
            h, d = e.shape
            e = e.reshape(kv_heads, h // kv_heads, d).mean(axis=1)
            out.append((e[:, 0::2] + e[:, 1::2]) / 2)
        return np.array(out)


class Engine:
    """One llama.cpp context holding one sequence (id 0)."""

    def __init__(self, gguf: str, n_ctx: int, threads: int = 1, flash_attn: int = -1, kv_type: str = "f16",
                 queries: QueryEnergy | None = None):
        """kv_type "f32" keeps the KV cache in float32 (with an F32 GGUF: the float oracle). `queries`
        watches the graph's queries (while its `on` is set)."""
        L.llama_log_set(_quiet_log, None)
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        # No extra buffer types: ggml built for a CPU that reports AMX routes matmuls to AMX
        # kernels, which fault where the hypervisor does not enable AMX.
        mp.use_extra_bufts = False
        self.model = L.llama_model_load_from_file(gguf.encode(), mp)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {gguf}")
        cp = L.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, BATCH, BATCH, 1
        cp.n_threads = cp.n_threads_batch = threads
        cp.flash_attn_type = flash_attn  # -1 auto, 0 off, 1 on
        if kv_type not in ("f16", "f32"):
            raise ValueError(f"kv_type {kv_type!r}: f16 or f32")
        cp.type_k = cp.type_v = {"f16": 1, "f32": 0}[kv_type]  # GGML_TYPE_F16 / GGML_TYPE_F32
        if queries is not None:
            self.queries = queries  # keeps the callback alive as long as the context
            cp.cb_eval, cp.cb_eval_user_data = queries.callback, None
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create a context")
        self.vocab = L.llama_model_get_vocab(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(self.vocab)

    def close(self) -> None:
        L.llama_free(self.ctx)
        L.llama_model_free(self.model)

    def tokenize(self, text: str, bos: bool) -> list[int]:
        data = text.encode()
        buf = (L.llama_token * (len(data) + 8))()
        n = L.llama_tokenize(self.vocab, data, len(data), buf, len(buf), bos, True)
        return list(buf[:n])

    def piece(self, token: int) -> str:
        buf = ctypes.create_string_buffer(64)
        n = L.llama_token_to_piece(self.vocab, token, buf, 64, 0, True)
        return buf.raw[:max(n, 0)].decode("utf-8", "replace")

    def clear(self) -> None:
        """Forgets every cell of the sequence."""
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)

    def keep(self, n: int) -> None:
        """Forgets the cells at positions n and later."""
        L.llama_memory_seq_rm(L.llama_get_memory(self.ctx), 0, n, -1)

    def prefill(self, tokens: list[int], start: int, all_logits: bool = False) -> np.ndarray:
        """Decodes `tokens` at positions start.. in batches. The logits of the last token
        [n_vocab], or with `all_logits` of every token [len(tokens), n_vocab] (teacher forcing)."""
        rows = []
        for off in range(0, len(tokens), BATCH):
            part = tokens[off:off + BATCH]
            b = L.llama_batch_init(len(part), 0, 1)
            for i, t in enumerate(part):
                b.token[i], b.pos[i], b.n_seq_id[i] = t, start + off + i, 1
                b.seq_id[i][0] = 0
                b.logits[i] = all_logits or off + i == len(tokens) - 1
            b.n_tokens = len(part)
            status = L.llama_decode(self.ctx, b)
            L.llama_batch_free(b)
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status}")
            if all_logits:
                rows.append(np.ctypeslib.as_array(L.llama_get_logits(self.ctx), shape=(len(part), self.n_vocab)).copy())
        if all_logits:
            return np.concatenate(rows)
        return np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, -1), shape=(self.n_vocab,)).copy()

    def prefill_kv(self, tokens: list[int], model) -> tuple[np.ndarray, object, np.ndarray]:
        """Prefills `tokens` from position 0 into an empty sequence and returns the KV of every
        position of every layer, the engine's layout (kvstore.llama) and the last token's logits.
        A model with sliding-window layers keeps only their last `window` positions in its state,
        so the prompt is decoded a window at a time and each window's rows are captured."""
        from . import llama as kl
        if not tokens:
            raise ValueError("nothing to prefill")
        self.clear()
        sliding = [i for i, s in enumerate(model.sliding_layers) if s]
        full = [i for i in range(model.layers) if i not in sliding]
        step = min(BATCH, model.sliding_window) if sliding else len(tokens)
        kv = None
        for start in range(0, len(tokens), step):
            end = min(start + step, len(tokens))
            logits = self.prefill(tokens[start:end], start)
            if sliding or end == len(tokens):
                part, layout, window_start = kl.state_to_kv_window(self.state(), model, count=end)
                if kv is None:
                    kv = np.zeros((model.layers, 2, len(tokens), *part.shape[3:]), part.dtype)
                if end == len(tokens):  # the full-attention cache holds every position: take it once
                    kv[full] = part[full]
                kv[sliding, :, window_start:end] = part[sliding, :, window_start:end]
        return kv, layout, logits

    def generate(self, first_logits: np.ndarray, start: int, n: int) -> list[int]:
        """Greedy continuation of `n` tokens after a prefill that ended at position start-1."""
        out = [int(first_logits.argmax())]
        while len(out) < n:
            out.append(int(self.prefill(out[-1:], start + len(out) - 1).argmax()))
        return out

    def state(self) -> bytes:
        """llama_state_seq_get_data of the sequence."""
        size = L.llama_state_seq_get_size(self.ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        if L.llama_state_seq_get_data(self.ctx, buf, size, 0) != size:
            raise RuntimeError("llama_state_seq_get_data wrote less than its size")
        return bytes(buf)

    def restore(self, state: bytes) -> None:
        """llama_state_seq_set_data into the sequence (after clear())."""
        buf = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if L.llama_state_seq_set_data(self.ctx, buf, len(state), 0) != len(state):
            raise RuntimeError("llama_state_seq_set_data refused the state")
