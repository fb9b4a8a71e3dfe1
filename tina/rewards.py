"""The paper's seven GRPO rewards, as plain functions with TRL's signature.

Why plain functions (the open-r1 style the paper's code inherits): TRL calls any
`f(completions, **kwargs) -> list[float | None]` and logs it under `rewards/<f.__name__>/mean`,
so a reward needs no class, no trainer and no model; each one is unit-tested on hand-computed
values, and the config names rewards by string (`get_reward`), checked (`REWARD_NAMES`,
`reward_params`) before any model loads.

Definitions follow the paper's released reward code (arXiv 2504.15777, open-r1 lineage); lengths are in characters.
`completions` is a list of strings or of conversations (the last message's content is scored);
the gold answers arrive as `solution=[...]`, one per completion; other keyword arguments TRL
passes (`prompts`, dataset columns, `trainer_state`, ...) are ignored except `prompts`, which
groups completions for the length reward.

No completion text makes a reward raise: anything math-verify cannot read scores as wrong. The
math-verify rewards (accuracy, length, cosine) share one verdict per completion (`tina.math_check`),
so a completion's check runs once per step however many of them score it, and is cut off at
math_check.CHECK_SECONDS (1 s; in-process by a signal at 0.8 s that an overloaded CPU can delay,
in a worker process by a kill at 1 s); one cut off scores as wrong and is counted under
TIMEOUTS_METRIC.
"""

from __future__ import annotations

import inspect
import math
import re
from typing import Any, Callable, Optional

from tina.math_check import Verdict, verdicts

Reward = Callable[..., list[Optional[float]]]

# Logged through TRL's `log_metric` by each math-verify reward at every call: how many of the
# call's completions hit math_check.CHECK_SECONDS (a count per call; TRL averages it over the
# logging interval and over processes). `reward` is the function's __name__, as in rewards/<name>/mean.
TIMEOUTS_METRIC = "rewards/{reward}/timeouts"


def _text(completion: Any) -> str:
    """A plain string, or the last message's content of a conversation; anything else is ''."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, (list, tuple)) and completion:
        completion = completion[-1]
    if isinstance(completion, dict):
        content = completion.get("content")
        return content if isinstance(content, str) else ""
    return ""


def _contents(completions: list) -> list[str]:
    return [_text(c) for c in completions]


def _solutions(kwargs: dict, n: int, reward: str) -> list:
    if "solution" not in kwargs:
        raise ValueError(f"{reward} needs the dataset's 'solution' column (gold answers)")
    solution = list(kwargs["solution"])
    if len(solution) != n:
        raise ValueError(f"{reward}: {n} completions but {len(solution)} solutions")
    return solution


def _judged(reward: str, contents: list[str], golds: list, kwargs: dict) -> list[Verdict]:
    """math_check's verdicts (bounded, cached), with the call's timeouts logged when TRL passes `log_metric`."""
    found = verdicts(contents, golds)
    log_metric = kwargs.get("log_metric")
    if callable(log_metric):
        log_metric(TIMEOUTS_METRIC.format(reward=reward), float(found.count(Verdict.TIMEOUT)))
    return found


def accuracy_reward(completions: list, **kwargs) -> list[Optional[float]]:
    """1.0 if math-verify finds the completion's (boxed-first) answer equal to the gold, else 0.0.

    None when the gold cannot be parsed: TRL then leaves the example out of this reward's mean.
    A check cut off at the time bound scores 0.0, like any answer math-verify cannot confirm.
    """
    contents = _contents(completions)
    golds = _solutions(kwargs, len(contents), "accuracy_reward")
    return [
        None if v is Verdict.NO_GOLD else float(v is Verdict.CORRECT)
        for v in _judged("accuracy_reward", contents, golds, kwargs)
    ]


def format_reward(completions: list, **kwargs) -> list[float]:
    """1.0 when the completion holds exactly one '\\n</think>\\n', else 0.0.

    Only the closing tag counts: the paper's chat template and system prompt already show '<think>'.
    """
    return [1.0 if c.count("\n</think>\n") == 1 else 0.0 for c in _contents(completions)]


def tag_count_reward(completions: list, **kwargs) -> list[float]:
    """0.5 for exactly one '<think>\\n' plus 0.5 for exactly one '\\n</think>\\n'."""
    return [
        0.5 * (c.count("<think>\n") == 1) + 0.5 * (c.count("\n</think>\n") == 1)
        for c in _contents(completions)
    ]


# The paper's pattern verbatim. It has no re.MULTILINE, so `^\d+\.` counts a numbered item only
# at the very start of the text ("1. a\n2. b" has one marker); kept so that rewards match the paper.
_STEP_MARKERS = re.compile(r"(Step \d+:|^\d+\.|\n-|\n\*|First,|Second,|Next,|Finally,)")


def reasoning_steps_reward(completions: list, **kwargs) -> list[float]:
    """min(1, n/3) for n step markers: 'Step k:', a leading '1.', '-'/'*' bullets, First/Second/Next/Finally,."""
    return [min(1.0, len(_STEP_MARKERS.findall(c)) / 3) for c in _contents(completions)]


def length_reward(completions: list, **kwargs) -> list[float]:
    """Kimi 1.5's length reward, lambda = 0.5 - (len - min_len) / (max_len - min_len).

    min_len and max_len are taken over the group: the completions that share a prompt when TRL
    passes `prompts` (the G samples of one question), else the whole call (in the paper each
    device's batch was exactly one group). Correct answers get lambda, wrong ones min(0, lambda);
    a group whose lengths are all equal gets 0.0 everywhere. A gold math-verify cannot parse
    counts as correct (open-r1's choice: the example is not penalised for bad data).
    """
    contents = _contents(completions)
    solution = _solutions(kwargs, len(contents), "length_reward")
    prompts = kwargs.get("prompts")
    if prompts is None or len(prompts) != len(contents):
        keys = [""] * len(contents)
    else:
        keys = [repr(p) for p in prompts]  # conversations are lists of dicts: not hashable
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)

    # Only groups of unequal lengths need verdicts; all of them are asked for in one batch.
    scored = [indices for indices in groups.values() if len({len(contents[i]) for i in indices}) > 1]
    flat = [i for indices in scored for i in indices]
    judged = _judged("length_reward", [contents[i] for i in flat], [solution[i] for i in flat], kwargs)
    verdict = dict(zip(flat, judged))
    rewards = [0.0] * len(contents)
    for indices in scored:
        lengths = [len(contents[i]) for i in indices]
        lo, hi = min(lengths), max(lengths)
        for i, length in zip(indices, lengths):
            lam = 0.5 - (length - lo) / (hi - lo)
            right = verdict[i] in (Verdict.CORRECT, Verdict.NO_GOLD)
            rewards[i] = lam if right else min(0.0, lam)
    return rewards


def get_cosine_scaled_reward(
    min_value_wrong: float = 0.0,
    max_value_wrong: float = -0.5,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    max_len: int = 1000,
) -> Reward:
    """Cosine length scaling: r = lo + 0.5 (hi - lo)(1 + cos(pi len / max_len)), len in characters.

    r is hi at len 0 and lo at len max_len. Correct: lo = min_value_correct, hi = max_value_correct,
    so with the defaults a short correct answer scores 1.0 and one of max_len characters 0.5.
    Wrong: the paper's code swaps the pair, lo = max_value_wrong, hi = min_value_wrong, so with the
    defaults (the paper's values) a short wrong answer scores 0.0 and one of max_len characters
    -0.5. (open-r1's defaults, -1.0 / -0.5, give short wrong -1.0, long wrong -0.5.) As in the
    paper's code the cosine is not clamped: past max_len it swings back up (at 2 max_len r = hi).
    A gold math-verify cannot parse scores 1.0 (open-r1's "skip").
    """
    if not max_len > 0:
        raise ValueError(f"cosine: max_len must be > 0, got {max_len!r}")

    def cosine_reward(completions: list, **kwargs) -> list[float]:
        contents = _contents(completions)
        golds = _solutions(kwargs, len(contents), "cosine_reward")
        rewards = []
        for content, verdict in zip(contents, _judged("cosine_reward", contents, golds, kwargs)):
            if verdict is Verdict.NO_GOLD:
                rewards.append(1.0)
                continue
            correct = verdict is Verdict.CORRECT
            lo, hi = (min_value_correct, max_value_correct) if correct else (max_value_wrong, min_value_wrong)
            rewards.append(float(lo + 0.5 * (hi - lo) * (1.0 + math.cos(math.pi * len(content) / max_len))))
        return rewards

    return cosine_reward


def get_repetition_penalty_reward(ngram_size: int = 3, max_penalty: float = -1.0) -> Reward:
    """max_penalty * (1 - unique n-grams / all n-grams) over lower-cased whitespace-split words.

    0.0 for a text of fewer than ngram_size words. From arXiv 2502.03373, Appendix C.2.
    """
    if not (isinstance(ngram_size, int) and ngram_size >= 1):
        raise ValueError(f"repetition: ngram_size must be an integer >= 1, got {ngram_size!r}")
    if max_penalty > 0:
        raise ValueError(f"repetition: max_penalty must be <= 0, got {max_penalty!r}")

    def repetition_reward(completions: list, **kwargs) -> list[float]:
        rewards = []
        for content in _contents(completions):
            words = content.lower().split()
            if len(words) < ngram_size:
                rewards.append(0.0)
                continue
            ngrams = list(zip(*[words[i:] for i in range(ngram_size)]))
            # + 0.0 turns the -0.0 of a text without repeats into 0.0 in the logs
            rewards.append(max_penalty * (1 - len(set(ngrams)) / len(ngrams)) + 0.0)
        return rewards

    return repetition_reward


# name -> factory taking that reward's parameters (none for the plain ones)
_FACTORIES: dict[str, Callable[..., Reward]] = {
    "accuracy": lambda: accuracy_reward,
    "format": lambda: format_reward,
    "tag_count": lambda: tag_count_reward,
    "reasoning_steps": lambda: reasoning_steps_reward,
    "length": lambda: length_reward,
    "cosine": get_cosine_scaled_reward,
    "repetition": get_repetition_penalty_reward,
}

REWARD_NAMES: tuple[str, ...] = tuple(sorted(_FACTORIES))


def reward_params(name: str) -> dict[str, Any]:
    """The parameters reward `name` takes, with their defaults ({} for a plain reward)."""
    _check_name(name)
    return {p.name: p.default for p in inspect.signature(_FACTORIES[name]).parameters.values()}


def get_reward(name: str, **params: Any) -> Reward:
    """The reward called `name`, configured with `params`; its __name__ is f'{name}_reward'."""
    allowed = reward_params(name)
    for param in params:
        if param not in allowed:
            raise ValueError(
                f"reward {name!r}: unknown parameter {param!r}; allowed: {sorted(allowed) or 'none'}"
            )
    return _FACTORIES[name](**params)


def _check_name(name: str) -> None:
    if name not in _FACTORIES:
        raise ValueError(f"unknown reward {name!r}; allowed: {list(REWARD_NAMES)}")
