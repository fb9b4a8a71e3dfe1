"""Held-out format and accuracy of a model, sampled the way TRL's GRPOTrainer samples.

Why sample like the trainer (do_sample with the run's temperature, top_p and top_k, the chat
template with add_generation_prompt=True, skip_special_tokens=True decoding: the one sampling loop,
tina.evaluate.inprocess.generate) rather than greedily:
the number is then directly comparable to the `rewards/*/mean` curves of the same run, and a
before/after pair measures what RL changed, not a change of decoding. The scoring functions are
the training rewards themselves (`tina.rewards.get_reward`), so the two cannot drift apart.
"""

from __future__ import annotations


def score(
    model,
    tokenizer,
    prompts: list[list[dict]],
    solutions: list[str],
    *,
    temperature: float = 0.7,
    top_p: float = 1.0,
    top_k: int = 0,
    max_new_tokens: int = 32,
    num_samples: int = 1,
    seed: int = 0,
    batch_size: int = 64,
) -> dict:
    """Mean format and accuracy reward over `num_samples` sampled completions per prompt.

    `prompts` are conversations ([{"role": "system", ...}, {"role": "user", ...}]), `solutions`
    the gold answers, one per prompt. Returns {"format": float, "accuracy": float, "n": int},
    n the number of completions scored, and "per_problem" {"problem_ids", "accuracy"}: each
    problem's mean accuracy over its samples, in prompt order, for paired comparisons between runs
    (analysis.compare); the ids are `tina.run_dir.problem_id` of the user message. Completions whose
    gold math-verify cannot parse are left out of the accuracy mean (as TRL leaves out a None
    reward); accuracy is NaN if all are, and that problem's per-problem accuracy None.
    The global torch RNG is left as it was; the model's train/eval mode too.
    """
    from tina.evaluate.inprocess import generate
    from tina.rewards import get_reward
    from tina.run_dir import problem_id

    if len(prompts) != len(solutions):
        raise ValueError(f"{len(prompts)} prompts but {len(solutions)} solutions")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    ids = [problem_id(next(m["content"] for m in reversed(p) if m["role"] == "user")) for p in prompts]
    prompts = [p for p in prompts for _ in range(num_samples)]
    solutions = [s for s in solutions for _ in range(num_samples)]
    if not prompts:
        return {"format": float("nan"), "accuracy": float("nan"), "n": 0}

    was_training = model.training
    model.eval()
    try:
        texts = [c for (c,) in generate(model, tokenizer, prompts, n=1, seed=seed, temperature=temperature,
                                         top_p=top_p, top_k=top_k, max_new_tokens=max_new_tokens, batch_size=batch_size)]
    finally:
        model.train(was_training)

    completions = [[{"role": "assistant", "content": t}] for t in texts]
    fmt = get_reward("format")(completions, solution=solutions)
    raw = get_reward("accuracy")(completions, solution=solutions)
    acc = [a for a in raw if a is not None]
    per = [raw[i * num_samples:(i + 1) * num_samples] for i in range(len(ids))]
    return {
        "format": sum(fmt) / len(fmt),
        "accuracy": sum(acc) / len(acc) if acc else float("nan"),
        "n": len(texts),
        "per_problem": {"problem_ids": ids, "n_samples": num_samples,
                        "accuracy": [None if None in a else sum(a) / len(a) for a in per]},
    }
