"""Converts a GGUF model into a Hugging Face checkpoint that vLLM loads (vLLM has no GGUF loader).

Runs in the vLLM venv (transformers, accelerate, gguf). The weights are dequantized to float32 and
saved as safetensors with the tokenizer; the output directory is written under a temporary name
and renamed at the end, so a directory that exists is complete.

    python tools/gguf_to_hf.py MODEL.gguf OUT_DIR
"""
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    src, name = str(gguf.parent), gguf.name
    loaded = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    config = AutoConfig.from_pretrained(src, gguf_file=name)
    # The GGUF config carries a quantization_config; the saved checkpoint is plain float32.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings: lm_head.weight may be absent from one side and shared on the other.
    missing = [k for k in missing if k != "lm_head.weight"]
    if missing or unexpected:
        raise SystemExit(f"weights do not match: missing {missing[:5]} unexpected {unexpected[:5]}")
    model.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(src, gguf_file=name).save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    gguf, out = Path(sys.argv[1]), Path(sys.argv[2])
    if not gguf.is_file():
        sys.exit(f"gguf_to_hf: no such file {gguf}")
    t0 = time.monotonic()
    convert(gguf, out)
    print(f"gguf_to_hf: {gguf.name} -> {out} in {time.monotonic() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
