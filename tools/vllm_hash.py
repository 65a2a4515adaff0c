#!/usr/bin/env python3
"""vLLM prefix-caching block hashes (``prefix_caching_hash_algo = "sha256_cbor"``) and the
test vectors the Swift implementation (Sources/KVStore/Keys/VLLMBlockHash.swift) is checked against.

Follows vllm/v1/core/kv_cache_utils.py (``hash_block_tokens``, ``init_none_hash``,
``generate_block_hash_extra_keys``) and vllm/utils/hashing.py (``sha256_cbor``):

    sha256_cbor(x)   = sha256(cbor2.dumps(x, canonical=True))
    NONE_HASH        = sha256_cbor(os.getenv("PYTHONHASHSEED"))  if PYTHONHASHSEED is set,
                       os.urandom(32)                             otherwise (per process!)
    h_i              = sha256_cbor((h_{i-1} or NONE_HASH, tuple(block_i_token_ids), extra_keys_i))
    extra_keys_i     = tuple([lora_name] + ([cache_salt] if block starts at token 0 else []))
                       or None when empty
Only full blocks (block_size tokens, 16 by default) are hashed.  Because an unset
PYTHONHASHSEED makes NONE_HASH random, the seed is a parameter here: a vLLM whose hashes an
external store should reproduce must run with a fixed PYTHONHASHSEED.

usage: vllm_hash.py vectors OUT.json        # write the committed test vectors
       vllm_hash.py hash --seed S TOKENS.json [--block-size 16] [--salt X] [--lora NAME]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys

import cbor2


def sha256_cbor(obj) -> bytes:
    return hashlib.sha256(cbor2.dumps(obj, canonical=True)).digest()


def none_hash(seed: str) -> bytes:
    """vLLM's NONE_HASH for PYTHONHASHSEED=seed (init_none_hash with sha256_cbor)."""
    return sha256_cbor(seed)


def extra_keys(block_start: int, lora_name: str | None = None, salt: str | None = None):
    keys = []
    if lora_name is not None:
        keys.append(lora_name)
    if block_start == 0 and salt:
        keys.append(salt)
    return tuple(keys) if keys else None


def hash_block_tokens(parent: bytes | None, token_ids, extra, seed: str) -> bytes:
    if not parent:
        parent = none_hash(seed)
    return sha256_cbor((parent, tuple(token_ids), extra))


def block_hashes(tokens, seed: str, block_size: int = 16, lora_name=None, salt=None) -> list[bytes]:
    out, parent = [], None
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = hash_block_tokens(parent, tokens[start:start + block_size],
                                   extra_keys(start, lora_name, salt), seed)
        out.append(parent)
    return out


def vectors() -> dict:
    # Deterministic token lists covering every CBOR integer width vLLM can meet (ids < 2**32).
    base = [(i * 7919 + 13) % 49152 for i in range(70)]
    wide = [0, 1, 23, 24, 255, 256, 65535, 65536, 2**31 - 1, 2**32 - 1] + list(range(100, 122))
    cases = [
        {"name": "plain", "seed": "0", "block_size": 16, "tokens": base},
        {"name": "other-seed", "seed": "12345", "block_size": 16, "tokens": base},
        {"name": "salt", "seed": "0", "block_size": 16, "tokens": base, "salt": "tenant-a"},
        {"name": "lora", "seed": "0", "block_size": 16, "tokens": base, "lora_name": "x"},
        {"name": "lora-and-salt", "seed": "0", "block_size": 16, "tokens": base, "lora_name": "x", "salt": "x"},
        {"name": "integer-widths", "seed": "0", "block_size": 16, "tokens": wide},
        {"name": "block-32", "seed": "0", "block_size": 32, "tokens": base},
        {"name": "short", "seed": "0", "block_size": 16, "tokens": base[:15]},
    ]
    for c in cases:
        c["none_hash"] = none_hash(c["seed"]).hex()
        c["hashes"] = [h.hex() for h in block_hashes(c["tokens"], c["seed"], c["block_size"],
                                                     c.get("lora_name"), c.get("salt"))]
    return {"algorithm": "vllm sha256_cbor block hashes (kv_cache_utils.hash_block_tokens)",
            "generator": "tools/vllm_hash.py", "cases": cases}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vectors")
    v.add_argument("out")
    h = sub.add_parser("hash")
    h.add_argument("tokens", help="JSON array file of token ids")
    h.add_argument("--seed", required=True, help="vLLM's PYTHONHASHSEED")
    h.add_argument("--block-size", type=int, default=16)
    h.add_argument("--salt")
    h.add_argument("--lora")
    a = ap.parse_args(argv)
    if a.cmd == "vectors":
        with open(a.out, "w") as f:
            json.dump(vectors(), f, indent=1)
            f.write("\n")
        return 0
    with open(a.tokens) as f:
        toks = json.load(f)
    for x in block_hashes(toks, a.seed, a.block_size, a.lora, a.salt):
        print(x.hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
