"""The one place where kvstore's canonical KV meets vLLM's paged blocks.

kvstore holds a layer's KV as [2, tokens, kv_heads, head_dim] (axis 0: keys, values). vLLM's CPU
backend (CPU_ATTN, layout LBHNC) keeps one tensor per layer, [num_blocks, kv_heads, block_size,
2 * head_size]; inside a (block, head) the keys come first, transposed ([head_size][block_size]), then
the values ([block_size][head_size]). Block id 0 is vLLM's null block: a sliding-window layer's
blocks before its window are null, and hold nothing to read or write.

Other backends lay blocks out differently; they get their own pair of functions here.
"""
from __future__ import annotations

import torch

NULL_BLOCK = 0


def check_cpu_layer(layer: torch.Tensor, block_size: int) -> None:
    """Refuses a layer tensor this module does not know how to read."""
    if layer.dim() != 4 or layer.shape[2] != block_size or layer.shape[3] % 2:
        raise ValueError(f"KV layer of shape {tuple(layer.shape)}: expected vLLM's CPU layout "
                         f"[num_blocks, kv_heads, {block_size}, 2 * head_size]")


def _halves(layer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of the keys [blocks, heads, head_dim, block_size] and values [blocks, heads, block_size, head_dim]."""
    nb, heads, bs, two_d = layer.shape
    d = two_d // 2
    flat = layer.view(nb, heads, 2, bs * d)
    return flat[:, :, 0].view(nb, heads, d, bs), flat[:, :, 1].view(nb, heads, bs, d)


def write_blocks(layer: torch.Tensor, block_ids: list[int], kv: torch.Tensor) -> None:
    """Writes one layer's canonical KV [2, n, heads, head_dim] (n a multiple of the block size) into the
    blocks `block_ids[: n / block_size]`, skipping null blocks."""
    bs = layer.shape[2]
    n = kv.shape[1]
    m = n // bs
    if n % bs or len(block_ids) < m:
        raise ValueError(f"{n} tokens do not fill {len(block_ids)} blocks of {bs}")
    ids = torch.tensor(block_ids[:m], dtype=torch.long)
    keep = ids != NULL_BLOCK
    if not bool(keep.any()):
        return
    keys, values = _halves(layer)
    k = kv[0].reshape(m, bs, kv.shape[2], kv.shape[3])[keep]
    v = kv[1].reshape(m, bs, kv.shape[2], kv.shape[3])[keep]
    keys[ids[keep]] = k.permute(0, 2, 3, 1).to(layer.dtype)
    values[ids[keep]] = v.permute(0, 2, 1, 3).to(layer.dtype)


def read_blocks(layer: torch.Tensor, block_ids: list[int], n: int) -> tuple[torch.Tensor, bool]:
    """One layer's canonical KV [2, n, heads, head_dim] from its first n / block_size blocks (a copy),
    and whether every block was real (False: null blocks read as zeros)."""
    nb, heads, bs, two_d = layer.shape
    d = two_d // 2
    m = n // bs
    if n % bs or len(block_ids) < m:
        raise ValueError(f"{n} tokens do not fill {len(block_ids)} blocks of {bs}")
    ids = torch.tensor(block_ids[:m], dtype=torch.long)
    keys, values = _halves(layer)
    out = torch.empty((2, m, bs, heads, d), dtype=layer.dtype)
    out[0] = keys[ids].permute(0, 3, 1, 2)
    out[1] = values[ids].permute(0, 2, 1, 3)
    null = ids == NULL_BLOCK
    if bool(null.any()):
        out[:, null] = 0
    return out.reshape(2, n, heads, d), not bool(null.any())
