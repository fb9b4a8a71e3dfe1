"""Cost accounting: GPU-hours, dollars, a FLOPs estimate, and the paper's cost/result tables.

* Dollars follow the paper's convention: cost = number of GPUs x wall-clock hours x USD per
  GPU-hour. Prices live in ONE place, ``tina/prices.yaml`` (read by ``tina.costmodel``):
  the paper's L40S at 1.00, other GPUs at list-price ballparks; see the comments there.
* ``paper_costs()`` / ``paper_results()`` load the project's own copies of the paper's tables
  (``analysis/paper/*.csv``; the project must not depend on anything outside itself at run time).
* ``flops()`` estimates the compute of a LoRA-GRPO run from its token count (formula in its
  docstring).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Mapping

import pandas as pd

# The price table and its readers live in tina.costmodel (the launcher's budget check needs them and
# tina may not import analysis): import them from there.
from tina.costmodel import dollars, gpu_hours, gpu_key

__all__ = [
    "run_cost",
    "flops", "flops_breakdown", "non_embedding_params", "base_params", "run_flops",
    "tokens_from_metrics", "tokens_from_summary", "paper_costs", "paper_results",
]

HERE = Path(__file__).resolve().parent
PAPER_DIR = HERE / "paper"


# ----------------------------------------------------------------------------- prices, dollars
def run_cost(summary: Mapping, prices: Mapping[str, float] | None = None) -> dict:
    """GPU-hours and dollars of a run from its summary.json dict.

    Uses ``wall_seconds`` and ``device`` {type, num_gpus, gpu_type, gpu_name}; a CPU run costs 0.
    Returns {"gpu_type", "num_gpus", "gpu_hours", "usd"}.
    """
    dev = dict(summary.get("device") or {})
    wall = float(summary.get("wall_seconds") or 0.0)
    if dev.get("type", "cpu") != "cuda":
        return {"gpu_type": "cpu", "num_gpus": 0, "gpu_hours": 0.0, "usd": 0.0}
    n = int(dev.get("num_gpus") or 1)
    key = gpu_key(dev.get("gpu_type") or dev.get("gpu_name"), prices)
    h = gpu_hours(wall, n)
    return {"gpu_type": key, "num_gpus": n, "gpu_hours": h, "usd": dollars(h, key, prices)}


# ----------------------------------------------------------------------------- FLOPs
def _cfg(config, key, default=None):
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def non_embedding_params(model_or_config) -> int:
    """N for the FLOPs formula: parameters outside the token embedding and the LM head.

    Accepts an int (returned as is), a torch module (counts parameters whose names do not contain
    ``embed_tokens``/``lm_head``/``wte``/``wpe``; LoRA parameters are counted too when present, so
    pass the base model), or a Qwen2/Llama-style config (dict or HF config) with hidden_size,
    num_hidden_layers, intermediate_size, num_attention_heads, num_key_value_heads [, head_dim,
    attention_bias]: per layer q,o (h x h), k,v (h x kv_dim), q/k/v biases for Qwen2, gate/up/down
    (3 x h x intermediate), two RMSNorms; plus the final norm. DeepSeek-R1-Distill-Qwen-1.5B:
    1.31e9 (1.78e9 with its untied embedding and head).
    """
    if isinstance(model_or_config, (int,)) and not isinstance(model_or_config, bool):
        return int(model_or_config)
    if hasattr(model_or_config, "named_parameters"):
        skip = ("embed_tokens", "lm_head", "wte", "wpe")
        return int(sum(p.numel() for name, p in model_or_config.named_parameters()
                       if not any(s in name for s in skip)))
    h = int(_cfg(model_or_config, "hidden_size"))
    layers = int(_cfg(model_or_config, "num_hidden_layers"))
    inter = int(_cfg(model_or_config, "intermediate_size"))
    heads = int(_cfg(model_or_config, "num_attention_heads"))
    kv_heads = int(_cfg(model_or_config, "num_key_value_heads", heads) or heads)
    head_dim = int(_cfg(model_or_config, "head_dim", None) or h // heads)
    model_type = str(_cfg(model_or_config, "model_type", "qwen2") or "qwen2")
    bias = _cfg(model_or_config, "attention_bias", None)
    bias = (model_type == "qwen2") if bias is None else bool(bias)
    q, kv = heads * head_dim, kv_heads * head_dim
    attn = h * q + 2 * h * kv + q * h + ((q + 2 * kv) if bias else 0)
    mlp = 3 * h * inter
    return int(layers * (attn + mlp + 2 * h) + h)


def flops_breakdown(
    n_params: int,
    tokens: float | None = None,
    *,
    prompt_tokens: float | None = None,
    completion_tokens: float | None = None,
    beta: float = 0.0,
    gradient_checkpointing: bool = False,
    num_iterations: int = 1,
    lora_params: int = 0,
) -> dict:
    """FLOPs of a LoRA-GRPO run, term by term (see :func:`flops`). Returns a dict of floats."""
    if tokens is None:
        if prompt_tokens is None and completion_tokens is None:
            raise ValueError("give tokens=, or prompt_tokens= and completion_tokens=")
        tokens = float(prompt_tokens or 0) + float(completion_tokens or 0)
    T, N = float(tokens), float(non_embedding_params(n_params))
    it = max(int(num_iterations), 1)
    out = {
        "generation": 2 * N * T,
        "policy_forward": 2 * N * T * it,
        "policy_backward": 2 * N * T * it,
        "recompute": (2 * N * T * it) if gradient_checkpointing else 0.0,
        "reference_forward": (2 * N * T) if beta and beta > 0 else 0.0,
        "lora_weight_grads": 2 * float(lora_params) * T * it,
        "tokens": T,
        "n_params": N,
    }
    out["total"] = sum(v for k, v in out.items() if k not in ("tokens", "n_params"))
    return out


def flops(n_params: int, tokens: float | None = None, **kw) -> float:
    """Estimated training FLOPs of a LoRA-GRPO run.

    With N = non-embedding parameters of the base model (:func:`non_embedding_params`) and
    T = prompt + completion tokens processed over the run (TRL's cumulative ``num_tokens``
    metric, :func:`tokens_from_metrics`, or summary.json's ``tokens``, :func:`tokens_from_summary`;
    or pass ``prompt_tokens=``/``completion_tokens=``), per token:

    * generation (rollouts, vLLM or HF generate): forward 2N (prompt prefill + each generated token);
    * policy training forward: 2N;
    * policy backward: 2N for the activation gradients only. The base weights are frozen, so the
      usual 2N of weight gradients is not spent; LoRA weight gradients cost ~2 N_lora per token
      (``lora_params``, default 0: rank 32 on a 1.5B model is ~1.5% of N, negligible);
    * reference-model forward: 2N when ``beta`` > 0 (KL penalty; with LoRA the reference is the
      base model with adapters disabled, still a full forward);
    * optional: +2N recomputation with ``gradient_checkpointing`` (the paper used it);
      ``num_iterations`` (GRPO's mu) repeats the training forward/backward per rollout batch.

    total ~= 2N T (1 + mu (2 + [grad ckpt]) + [beta > 0]) + 2 N_lora T mu, i.e. 8NT for the
    paper's recipes without checkpointing (beta = 0.04), 10NT with it. It ignores attention's
    context-length term (2 n_layer n_ctx d_attn per token; ~10-15% extra at 4k tokens for a 1.5B
    model) and the embedding/LM-head matmuls, so it is a lower-bound-style estimate for comparing
    runs, not a profiler reading.
    """
    return flops_breakdown(n_params, tokens, **kw)["total"]


def tokens_from_metrics(df: pd.DataFrame, key: str = "num_tokens") -> float | None:
    """Total tokens seen: the last value of TRL's cumulative ``num_tokens`` metric (None if absent)."""
    if df is None or key not in getattr(df, "columns", []):
        return None
    s = pd.to_numeric(df[key], errors="coerce").dropna()
    return float(s.iloc[-1]) if len(s) else None


def tokens_from_summary(summary: Mapping) -> float | None:
    """prompt + completion tokens from summary.json's ``tokens`` (None if absent)."""
    tok = (summary or {}).get("tokens") or {}
    if not tok:
        return None
    return float(tok.get("prompt") or 0) + float(tok.get("completion") or 0)


@lru_cache(maxsize=64)
def base_params(model: str | None) -> int | None:
    """Non-embedding parameters of a base model from its config.json (a local directory, or a hub
    id already in the local HF cache: this never downloads); None when it cannot be found."""
    if not model:
        return None
    cfg = Path(model) / "config.json"
    if not cfg.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            hit = try_to_load_from_cache(model, "config.json")
            cfg = Path(hit) if isinstance(hit, str) else None
        except Exception:  # noqa: BLE001 - no cache, odd id: the caller falls back
            cfg = None
    if cfg is None or not cfg.is_file():
        return None
    try:
        return non_embedding_params(json.loads(cfg.read_text()))
    except Exception:  # noqa: BLE001 - an unexpected architecture: the caller falls back
        return None


def run_flops(model: str | None, summary: Mapping, tokens: float | None, *, beta: float = 0.0,
              gradient_checkpointing: bool = False,
              num_iterations: int = 1) -> tuple[float | None, str | None]:
    """(FLOPs estimate of a run, what N was taken from). N from the base model's config.json
    (:func:`base_params`), else summary.json's parameter count minus LoRA's, which includes the
    embeddings and so overestimates; the second value says which."""
    if not tokens:
        return None, None
    lora = int(summary.get("trainable_params") or 0)
    n, basis = base_params(model), "model config"
    if n is None:
        total = summary.get("num_params")
        if not total:
            return None, None
        n, basis = int(total) - lora, "summary num_params (incl. embeddings)"
    return flops(n, tokens, beta=beta, gradient_checkpointing=gradient_checkpointing,
                 num_iterations=num_iterations, lora_params=lora), basis


# ----------------------------------------------------------------------------- paper tables
def paper_costs() -> pd.DataFrame:
    """The paper's cost table (USD; 2x L40S at ~1 USD/GPU-hour): item, train_usd, eval_usd, total_usd."""
    return pd.read_csv(PAPER_DIR / "paper_costs.csv", comment="#")


def paper_results() -> pd.DataFrame:
    """The paper's pass@1 table (Tables 2-4): name, kind, dataset, ..., per-benchmark %, avg."""
    return pd.read_csv(PAPER_DIR / "paper_results.csv", comment="#")
