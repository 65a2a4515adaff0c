"""KVStoreConnector: vLLM loads stored prefixes from kvstore and stores what it computed.

Scheduler side: a request's longest stored prefix, in whole chunks, becomes vLLM's external hit
(`get_num_new_matched_tokens`); when its prompt is computed, its whole chunks are queued for saving.
Worker side: the hit's chunks are decoded by the project's codec (libkvstore_c) and written into the
request's paged blocks before the forward (`start_load_kv`); after the step that completes a prompt,
its whole chunks are read out of the blocks and put in a background thread (`wait_for_save`).
A load that fails (store down, corrupt chunk, chunk gone) reports its blocks through
`get_block_ids_with_load_errors`, and vLLM recomputes them (kv_load_failure_policy "recompute").
"""
from __future__ import annotations

import atexit
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import numpy as np
import torch
from vllm.distributed.kv_transfer.kv_connector.v1.base import (KVConnectorBase_V1, KVConnectorMetadata,
                                                               KVConnectorRole, SupportsHMA)
from vllm.logger import init_logger
from vllm.model_executor.models.utils import extract_layer_index

from ..store import Space
from . import layout
from .backends import EmbeddedBackend, RemoteBackend
from .identity import model_id

if TYPE_CHECKING:
    from vllm.config import VllmConfig
    from vllm.forward_context import ForwardContext
    from vllm.v1.attention.backend import AttentionMetadata
    from vllm.v1.core.kv_cache_manager import KVCacheBlocks
    from vllm.v1.core.sched.output import SchedulerOutput
    from vllm.v1.kv_cache_interface import KVCacheConfig
    from vllm.v1.request import Request

# Under "vllm." so the lines go where vLLM logs (its handler is on the "vllm" logger).
logger = init_logger("vllm.kvstore")

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


@dataclass
class LoadOp:
    req_id: str
    tokens: list[int]              # the stored prefix (whole chunks)
    block_ids: list[list[int]]     # per KV cache group
    start: int                     # first token to write (vLLM already holds [0, start))
    tenant: Optional[str]


@dataclass
class SaveOp:
    req_id: str
    tokens: list[int]              # whole chunks of the prompt
    block_ids: list[list[int]]
    tenant: Optional[str]


@dataclass
class KVStoreMetadata(KVConnectorMetadata):
    loads: list[LoadOp] = field(default_factory=list)
    saves: list[SaveOp] = field(default_factory=list)


@dataclass
class _Request:
    """Scheduler-side state of one request."""
    prompt: list[int]
    block_ids: list[list[int]]
    stored: int                    # whole-chunk tokens the store held at lookup
    tenant: Optional[str]
    save_sent: bool = False


class KVStoreConnector(KVConnectorBase_V1, SupportsHMA):
    """kv_transfer_config: {"kv_connector": "KVStoreConnector", "kv_connector_module_path": "kvstore.vllm",
    "kv_role": "kv_both", "kv_load_failure_policy": "recompute", "kv_connector_extra_config": {"store": DIR} or
    {"url": "http://HOST:PORT", "token": ..., "slo_ms": 1000}, with optional "levels" (default [0]),
    "tenant" and "model_id"}. See docs/vllm.md."""

    def __init__(self, vllm_config: "VllmConfig", role: KVConnectorRole, kv_cache_config: "KVCacheConfig"):
        super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
        extra = self._kv_transfer_config.kv_connector_extra_config or {}
        if vllm_config.parallel_config.tensor_parallel_size != 1 or vllm_config.parallel_config.pipeline_parallel_size != 1:
            raise NotImplementedError("KVStoreConnector handles one worker (tensor and pipeline parallel size 1)")
        if self._kv_transfer_config.kv_load_failure_policy != "recompute":
            logger.warning("kvstore: kv_load_failure_policy is %r: a failed load fails the request; "
                           "set \"recompute\" to have vLLM recompute it", self._kv_transfer_config.kv_load_failure_policy)
        mc = vllm_config.model_config
        cache_dtype = vllm_config.cache_config.cache_dtype
        dtype = mc.dtype if cache_dtype == "auto" else None
        if dtype not in DTYPES:
            raise NotImplementedError(f"KVStoreConnector stores F32, F16 and BF16 KV, not cache dtype {cache_dtype}/{mc.dtype}")
        self._groups = [list(g.layer_names) for g in kv_cache_config.kv_cache_groups]
        self._group_of = {name: g for g, names in enumerate(self._groups) for name in names}
        self._layer_names = sorted(self._group_of, key=lambda n: extract_layer_index(n))
        self._block_size = vllm_config.cache_config.block_size
        levels = [int(l) for l in extra.get("levels", [0])]
        self.space = Space(model=str(extra.get("model_id") or model_id(mc.model)), dtype=DTYPES[dtype],
                           layers=len(self._layer_names), kv_heads=mc.get_num_kv_heads(vllm_config.parallel_config),
                           head_dim=mc.get_head_size())
        if extra.get("store"):
            self.backend = EmbeddedBackend(str(extra["store"]), levels)
            self._tenant = extra.get("tenant")
        elif extra.get("url"):
            self.backend = RemoteBackend(str(extra["url"]), extra.get("token"), levels, float(extra.get("slo_ms", 1000)),
                                         int(extra.get("chunk_tokens", 256)))
            self._tenant = None  # the server's tenant is the token's
        else:
            raise ValueError("kv_connector_extra_config needs \"store\" (a store directory) or \"url\" (a kvstore serve)")
        self.chunk_tokens = self.backend.chunk_tokens
        if self.chunk_tokens % self._block_size:
            raise ValueError(f"kvstore chunks of {self.chunk_tokens} tokens are not whole vLLM blocks of {self._block_size}")
        # Scheduler side.
        self._requests: dict[str, _Request] = {}
        self._hits: dict[str, int] = {}
        self._tenants: dict[str, Optional[str]] = {}
        self._loads: dict[str, int] = {}      # req id -> first token to load
        # Worker side.
        self._layers: dict[str, torch.Tensor] = {}
        self._failed_blocks: set[int] = set()
        self._saver: Optional[ThreadPoolExecutor] = None
        self._pending: list[Any] = []
        self.stats = {"lookups": 0, "hit_tokens": 0, "loads": 0, "loaded_tokens": 0, "load_failures": 0,
                      "saves": 0, "saved_tokens": 0, "save_failures": 0}
        self._lock = threading.Lock()
        logger.info("kvstore: %s connector on %s as %s (%s, %d layers x %d kv heads x %d in %d KV cache groups, "
                    "chunks of %d tokens, levels %s)", role.name.lower(), self.backend.where, self.space.model,
                    self.space.dtype, self.space.layers, self.space.kv_heads, self.space.head_dim, len(self._groups),
                    self.chunk_tokens, levels)

    def _tenant_of(self, request: "Request") -> Optional[str]:
        """The store's tenant: the configured one, and the request's cache salt, which keeps what
        vLLM would keep apart in its own prefix cache apart here too."""
        salt = getattr(request, "cache_salt", None)
        if salt is None:
            return self._tenant
        return f"{self._tenant or ''}/{salt}"

    def _space(self, tenant: Optional[str]) -> Space:
        return dataclasses.replace(self.space, tenant=tenant)

    # ------------------------------------------------------------------ scheduler side

    def get_num_new_matched_tokens(self, request: "Request", num_computed_tokens: int) -> tuple[int | None, bool]:
        prompt = list(request.prompt_token_ids or [])
        # vLLM computes at least the prompt's last token itself.
        limit = (len(prompt) - 1) // self.chunk_tokens * self.chunk_tokens
        if limit <= num_computed_tokens:
            return 0, False
        try:
            tenant = self._tenant_of(request)
            matched = self.backend.matched(self._space(tenant), prompt[:limit])
        except Exception as e:  # a store that is down is a miss, never an error for the request
            logger.warning("kvstore: lookup for request %s failed, computing it: %s", request.request_id, e)
            return 0, False
        hit = min(matched, limit) // self.chunk_tokens * self.chunk_tokens
        self._hits[request.request_id] = hit
        self._tenants[request.request_id] = tenant
        self.stats["lookups"] += 1
        if hit <= num_computed_tokens:
            return 0, False
        logger.info("kvstore: request %s: %d of %d prompt tokens stored (%d computed by vLLM)",
                    request.request_id, hit, len(prompt), num_computed_tokens)
        return hit - num_computed_tokens, False

    def update_state_after_alloc(self, request: "Request", blocks: "KVCacheBlocks", num_external_tokens: int):
        if num_external_tokens > 0:
            hit = self._hits.get(request.request_id, 0)
            self._loads[request.request_id] = hit - num_external_tokens

    def build_connector_meta(self, scheduler_output: "SchedulerOutput") -> KVConnectorMetadata:
        meta = KVStoreMetadata()
        scheduled = scheduler_output.num_scheduled_tokens
        for new in scheduler_output.scheduled_new_reqs:
            state = _Request(prompt=list(new.prompt_token_ids or []), block_ids=[list(g) for g in new.block_ids],
                             stored=self._hits.get(new.req_id, 0), tenant=self._tenants.get(new.req_id, self._tenant))
            self._requests[new.req_id] = state
            self._queue_load(new.req_id, state, meta)
            self._queue_save(new.req_id, state, new.num_computed_tokens + scheduled.get(new.req_id, 0), meta)
        cached = scheduler_output.scheduled_cached_reqs
        for i, rid in enumerate(cached.req_ids):
            state = self._requests.get(rid)
            if state is None:
                continue
            new_ids = cached.new_block_ids[i]
            if rid in cached.resumed_req_ids:
                # Resumed after preemption: new_block_ids is the whole table.
                state.block_ids = [list(g) for g in new_ids] if new_ids else [[] for _ in state.block_ids]
                state.save_sent = False
            elif new_ids:
                for g, ids in enumerate(new_ids):
                    state.block_ids[g].extend(ids)
            self._queue_load(rid, state, meta)
            self._queue_save(rid, state, cached.num_computed_tokens[i] + scheduled.get(rid, 0), meta)
        self._loads.clear()
        return meta

    def _queue_load(self, rid: str, state: _Request, meta: KVStoreMetadata) -> None:
        if rid in self._loads:
            hit = self._hits.get(rid, 0)
            meta.loads.append(LoadOp(rid, state.prompt[:hit], [list(g) for g in state.block_ids], self._loads[rid],
                                     state.tenant))

    def _queue_save(self, rid: str, state: _Request, computed: int, meta: KVStoreMetadata) -> None:
        """Once the prompt is computed, its whole chunks beyond what was stored are saved."""
        if state.save_sent or computed < len(state.prompt):
            return
        state.save_sent = True
        n = len(state.prompt) // self.chunk_tokens * self.chunk_tokens
        if n > state.stored:
            meta.saves.append(SaveOp(rid, state.prompt[:n], [list(g) for g in state.block_ids], state.tenant))

    def request_finished(self, request: "Request", block_ids: list[int]) -> tuple[bool, dict[str, Any] | None]:
        self._forget(request.request_id)
        return False, None

    def request_finished_all_groups(self, request: "Request",
                                    block_ids: tuple[list[int], ...]) -> tuple[bool, dict[str, Any] | None]:
        self._forget(request.request_id)
        return False, None

    def _forget(self, rid: str) -> None:
        self._requests.pop(rid, None)
        self._hits.pop(rid, None)
        self._tenants.pop(rid, None)
        self._loads.pop(rid, None)

    # ------------------------------------------------------------------ worker side

    def register_kv_caches(self, kv_caches: dict[str, torch.Tensor]):
        missing = [n for n in self._layer_names if n not in kv_caches]
        if missing:
            raise ValueError(f"kvstore: vLLM registered no KV cache for layers {missing[:3]}")
        for name in self._layer_names:
            layout.check_cpu_layer(kv_caches[name], self._block_size)
        self._layers = {n: kv_caches[n] for n in self._layer_names}

    def _to_torch(self, a: np.ndarray) -> torch.Tensor:
        if self.space.dtype == "BF16":
            return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(a)

    def _to_numpy(self, t: torch.Tensor) -> np.ndarray:
        if t.dtype == torch.bfloat16:
            return t.view(torch.int16).numpy().view(np.uint16)
        return t.numpy()

    def start_load_kv(self, forward_context: "ForwardContext", **kwargs: Any) -> None:
        meta = self._get_connector_metadata()
        assert isinstance(meta, KVStoreMetadata)
        bs = self._block_size
        for op in meta.loads:
            n = len(op.tokens)
            first, last = op.start // bs, n // bs
            t0 = time.monotonic()
            try:
                kv = self._to_torch(self.backend.read(self._space(op.tenant), op.tokens, n))
                for i, name in enumerate(self._layer_names):
                    g = self._group_of[name]
                    layout.write_blocks(self._layers[name], op.block_ids[g][first:last], kv[i, :, op.start:n])
            except Exception as e:
                failed = {b for g in op.block_ids for b in g[first:last] if b != layout.NULL_BLOCK}
                self._failed_blocks |= failed
                self.stats["load_failures"] += 1
                logger.warning("kvstore: loading %d tokens for request %s failed, vLLM recomputes them: %s",
                               n - op.start, op.req_id, e)
                continue
            self.stats["loads"] += 1
            self.stats["loaded_tokens"] += n - op.start
            logger.info("kvstore: loaded %d tokens for request %s in %.1f ms", n - op.start, op.req_id,
                        (time.monotonic() - t0) * 1e3)

    def wait_for_layer_load(self, layer_name: str) -> None:
        return

    def save_kv_layer(self, layer_name: str, kv_layer: torch.Tensor, attn_metadata: "AttentionMetadata",
                      **kwargs: Any) -> None:
        return  # whole prompts are saved after the step, in wait_for_save

    def get_block_ids_with_load_errors(self) -> set[int]:
        failed, self._failed_blocks = self._failed_blocks, set()
        return failed

    def wait_for_save(self):
        if not self.has_connector_metadata():
            return
        meta = self._get_connector_metadata()
        assert isinstance(meta, KVStoreMetadata)
        for op in meta.saves:
            n = self._savable(op)
            if n == 0:
                logger.info("kvstore: request %s: no whole chunk of its prompt is in real blocks; nothing saved", op.req_id)
                continue
            # Copied out now (the blocks are reused once the request ends); encoded and put in the background.
            kv = np.stack([self._to_numpy(layout.read_blocks(self._layers[name], op.block_ids[self._group_of[name]], n)[0])
                           for name in self._layer_names])
            if self._saver is None:
                self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kvstore-save")
                atexit.register(self.shutdown)
            self._pending = [f for f in self._pending if not f.done()]
            self._pending.append(self._saver.submit(self._put, op.req_id, self._space(op.tenant), kv, op.tokens[:n]))

    def _savable(self, op: SaveOp) -> int:
        """Tokens of the longest run of whole chunks whose blocks are all real in every group (a
        sliding-window group frees blocks behind its window; those chunks are not saved)."""
        per_chunk = self.chunk_tokens // self._block_size
        chunks = len(op.tokens) // self.chunk_tokens
        for c in range(chunks):
            blocks = range(c * per_chunk, (c + 1) * per_chunk)
            if any(b >= len(g) or g[b] == layout.NULL_BLOCK for g in op.block_ids for b in blocks):
                return c * self.chunk_tokens
        return chunks * self.chunk_tokens

    def _put(self, rid: str, space: Space, kv: np.ndarray, tokens: list[int]) -> None:
        t0 = time.monotonic()
        try:
            report = self.backend.put(space, kv, tokens)
        except Exception as e:
            with self._lock:
                self.stats["save_failures"] += 1
            logger.warning("kvstore: saving %d tokens of request %s failed: %s", len(tokens), rid, e)
            return
        if "skipped" in report:
            logger.info("kvstore: request %s not stored: %s", rid, report["skipped"])
            return
        with self._lock:
            self.stats["saves"] += 1
            self.stats["saved_tokens"] += len(tokens)
        logger.info("kvstore: stored %d tokens of request %s (%s new chunks) in %.1f ms", len(tokens), rid,
                    report.get("chunks", 0) - report.get("deduplicatedChunks", 0), (time.monotonic() - t0) * 1e3)

    def shutdown(self):
        """Finishes the queued saves."""
        if self._saver is not None:
            self._saver.shutdown(wait=True)
            self._saver = None
