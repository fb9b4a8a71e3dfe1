"""The `transformers` backend: HF generation and tina's own scorer, in this process.

No lighteval environment and no subprocess, so it is the quick one for the embedded tiny model and
the toy task (and any benchmark from a local file), and what eval.after_training uses by default: n sampled
completions per problem for each seed, scored by `tina.evaluate.testsets.score` (the training accuracy
reward for maths). Sampling follows the paper's evaluation (temperature, top_p, chat template,
no system prompt) rather than the trainer's, so CPU and GPU numbers mean the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch


def load_model(base: str, adapter: Optional[Path], *, dtype: str = "float32"):
    """The base model with the LoRA adapter merged in (merged: plain weights generate faster)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype))
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    return model.eval()


def load_tokenizer(base: str, chat_template: Optional[str] = None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    tokenizer.padding_side = "left"  # decoder-only batch generation
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def generate(model, tokenizer, conversations: list[list[dict]], *, n: int, seed: int, temperature: float,
             top_p: float, max_new_tokens: int, batch_size: int, top_k: int = 0) -> list[list[str]]:
    """`n` sampled completions per conversation, reproducible from `seed` (global RNG left as it was).

    The one sampling loop (evaluation and tina.heldout): the chat template with the generation
    prompt, left padding, the end of sequence of both the model's generation config and the
    tokenizer, special tokens dropped from the decoded text. top_k=0 is off, as vLLM/TRL sample."""
    eos = model.generation_config.eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    texts = [tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False) for c in conversations]
    per_call = max(1, batch_size // n)  # prompts per generate call; each yields n sequences
    out: list[list[str]] = []
    with torch.random.fork_rng(), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, len(texts), per_call):
            batch = texts[start : start + per_call]
            enc = tokenizer(batch, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
            ids = model.generate(
                **enc.to(next(model.parameters()).device), do_sample=True, temperature=temperature, top_p=top_p, top_k=top_k,
                max_new_tokens=max_new_tokens, num_return_sequences=n, eos_token_id=eos, pad_token_id=pad,
            )
            decoded = tokenizer.batch_decode(ids[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
            out.extend(decoded[i : i + n] for i in range(0, len(decoded), n))
    return out


def evaluate(model, tokenizer, bench, examples: list[dict], *, system: Optional[str], n: int, seeds: list[int],
             temperature: float, top_p: float, max_new_tokens: int, batch_size: int) -> dict:
    """Scores of one benchmark: runs (one per seed x sample index), per-problem means, unread golds."""
    from tina.evaluate import testsets as bm
    from tina.rewards import get_reward

    conversations = [bm.messages(e, system) for e in examples]
    golds = [e["gold"] for e in examples]
    runs, totals, unread, fmt = [], [0.0] * len(examples), 0, []
    for seed in seeds:
        completions = generate(model, tokenizer, conversations, n=n, seed=seed, temperature=temperature,
                               top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size)
        for i in range(n):
            texts = [c[i] for c in completions]
            correct, bad = bm.score(bench, texts, golds)
            unread = max(unread, bad)
            runs.append(sum(correct) / len(correct))
            totals = [t + c for t, c in zip(totals, correct)]
            if bench.name == "toy":  # the toy model's format is the phase-transition story: keep it
                fmt.extend(get_reward("format")(texts))
    per_problem = [t / (n * len(seeds)) for t in totals]
    extra = {"format": sum(fmt) / len(fmt)} if fmt else {}
    return {"runs": runs, "per_problem": per_problem, "gold_unread": unread, "extra": extra}
