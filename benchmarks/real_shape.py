"""A randomly initialised model of DeepSeek-R1-Distill-Qwen-1.5B's exact shape, built with no download.

    python benchmarks/real_shape.py OUT_DIR [--dtype float32|bfloat16]

Its speed and memory are the real model's (same architecture and sizes), its answers are noise. It
lets the real-shape paths (tests/test_real_shape.py on CPU, scripts/gpu-check.sh on a GPU) run
where the hub cannot be reached. The tokenizer is the embedded tiny model's: its ids (< 400) all
fit the 151,936-row embedding, and its ids for eos/pad are written into the model's config.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

# The hub's config.json of deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B (Qwen2ForCausalLM).
SHAPE_1_5B = dict(vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                  num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=131072)
ARCH_1_5B = dict(tie_word_embeddings=False, rms_norm_eps=1e-6, hidden_act="silu", use_sliding_window=False,
                 initializer_range=0.02, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})


def build(out: str | Path, dtype: str = "float32") -> Path:
    """Save the random model (weights in `dtype`) and the embedded tokenizer to `out`; return it."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from tina.embedded import TINY_DIR

    out = Path(out)
    tokenizer = AutoTokenizer.from_pretrained(TINY_DIR)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    config = Qwen2Config(**SHAPE_1_5B, **ARCH_1_5B, bos_token_id=eos, eos_token_id=eos, pad_token_id=pad)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))  # built in its dtype: no second copy to convert
    try:
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = eos, pad
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    template = Path(TINY_DIR) / "chat_template.jinja"
    if template.is_file() and not (out / template.name).exists():
        shutil.copy(template, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    args = ap.parse_args()
    started = time.time()
    build(args.out, args.dtype)
    print(f"real-shape model ({args.dtype}) in {args.out} ({time.time() - started:.0f} s)")


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
