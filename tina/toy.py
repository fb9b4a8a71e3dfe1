"""The embedded toy task: two-digit addition with a verifiable answer, generated from a seed.

Why this task: GRPO needs a reward it can check and a policy with room to improve. Here both are
cheap. The gold answer is exact, so math-verify scores a completion without a judge, and the
sum can be worked digit by digit in a few tokens (`3+5=8`, `2+4=6`), which a 143k-parameter
model learns in seconds. The embedded base is warm-started on a *mix* of traces
(`tina.embedded.build`): some are well formed and reasoned, some break the `<think>` format
(`malformed`), some skip the work and guess (`guessed`). So, like the paper's distilled base,
it starts out right in format and accuracy only part of the time, and RL with the format and
accuracy rewards has something to learn: always close the think block properly, always work
the sum out instead of guessing.

The train and test splits are disjoint by construction: a hash of the problem text picks its
split, so no held-out problem is ever trained on, whatever the seeds and sizes.
"""

from __future__ import annotations

import hashlib
import random
import re

# The open-rs system prompt, cut down: every prompt token costs CPU time at this scale.
SYSTEM_PROMPT = "Reason in <think> </think>, then answer in <answer> </answer> with the final answer in \\boxed{}."

SPLITS = ("train", "test")
TEST_PER_MILLE = 100  # ~10% of all problems are held out
LOW, HIGH = 10, 99  # both operands have two digits: 8100 problems in all

_PROBLEM = re.compile(r"What is (\d+) \+ (\d+)\?")


def _problem(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def split_of(problem: str) -> str:
    """The split a problem belongs to: a hash of its text, so independent of any seed."""
    digest = hashlib.sha256(problem.encode()).digest()
    return "test" if int.from_bytes(digest[:4], "big") % 1000 < TEST_PER_MILLE else "train"


def _pool(split: str) -> list[tuple[int, int]]:
    return [(a, b) for a in range(LOW, HIGH + 1) for b in range(LOW, HIGH + 1) if split_of(_problem(a, b)) == split]


def rows(split: str, n: int, seed: int) -> list[dict]:
    """`n` problems of `split` as {"problem", "solution"}; solution is the gold as math-verify reads it ("$68$").

    Problems are drawn without replacement from the split (7353 train, 747 test); past that the
    split is reshuffled and drawn again, so a large `n` repeats problems rather than failing.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(f"tina.toy/{split}/{seed}")
    pool = _pool(split)
    picked: list[tuple[int, int]] = []
    while len(picked) < n:
        order = pool[:]
        rng.shuffle(order)
        picked.extend(order[: n - len(picked)])
    return [{"problem": _problem(a, b), "solution": f"${a + b}$"} for a, b in picked]


def parse_problem(problem: str) -> tuple[int, int]:
    m = _PROBLEM.fullmatch(problem.strip())
    if m is None:
        raise ValueError(f"not a toy problem (expected 'What is A + B?'): {problem!r}")
    return int(m.group(1)), int(m.group(2))


def _reasoning(a: int, b: int) -> str:
    """Column addition, units first: '7+5=12' then '2+4+1=7' for 27 + 45."""
    units = a % 10 + b % 10
    carry = units // 10
    tens = f"{a // 10}+{b // 10}" + (f"+{carry}" if carry else "")
    return f"{a % 10}+{b % 10}={units}\n{tens}={a // 10 + b // 10 + carry}"


# Ways a trace can miss the format reward (exactly one "\n</think>\n"), each one token away from right.
MALFORMED = ("no_newline_before_close", "no_newline_after_close", "no_close")


DIRECT_WORK = "direct"  # the think block of a direct trace: no working, the same words for every problem


def trace(problem: str, answer, *, malformed: bool, guessed: bool, rng: random.Random, direct: bool = False) -> str:
    """A completion for `problem` whose gold is `answer` (int, "68" or "$68$").

    Well formed: `<think>\\n{work}\\n</think>\\n<answer>\\n\\boxed{68}\\n</answer>`.
    `guessed`: the work is cut to "guess 2+4=6" (tens only) and the answer is 60: wrong unless both
    units are 0.
    `malformed`: one of MALFORMED, each of which the format reward rejects.
    `direct`: the answer (right, or the guess) with no working: the think block holds only DIRECT_WORK
    (the traces of a model never shown reasoning, tina.embedded.build --direct).
    """
    a, b = parse_problem(problem)
    gold = int(str(answer).strip().strip("$"))
    if direct:
        value = (a // 10 + b // 10) * 10 if guessed else gold
        work = DIRECT_WORK
    elif guessed:
        # Shortened work: add the tens, drop the units (right only when both units are 0). The same
        # digit sums as in the full work, so guessing teaches no arithmetic that contradicts it.
        value = (a // 10 + b // 10) * 10
        work = f"guess {a // 10}+{b // 10}={a // 10 + b // 10}"
    else:
        value = gold
        work = _reasoning(a, b)
    answer_block = f"<answer>\n\\boxed{{{value}}}\n</answer>"
    if not malformed:
        return f"<think>\n{work}\n</think>\n{answer_block}"
    kind = rng.choice(MALFORMED)
    if kind == "no_newline_before_close":
        return f"<think>\n{work}</think>\n{answer_block}"
    if kind == "no_newline_after_close":
        return f"<think>\n{work}\n</think>{answer_block}"
    return f"<think>\n{work}\n{answer_block}"
