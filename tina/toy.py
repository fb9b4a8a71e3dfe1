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
_SUM = re.compile(r"What is (\d+(?: \+ \d+)+)\?")

# "add": A + B (the default). "sum": SUM_TERMS addends, worked with running sums and checked
# (experiment=toy_transition): a worked answer longer than the setting's length budget.
TASKS = ("add", "sum")
SUM_TERMS = (2, 2)


def _problem(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def split_of(problem: str) -> str:
    """The split a problem belongs to: a hash of its text, so independent of any seed."""
    digest = hashlib.sha256(problem.encode()).digest()
    return "test" if int.from_bytes(digest[:4], "big") % 1000 < TEST_PER_MILLE else "train"


def _pool(split: str) -> list[tuple[int, int]]:
    return [(a, b) for a in range(LOW, HIGH + 1) for b in range(LOW, HIGH + 1) if split_of(_problem(a, b)) == split]


def rows(split: str, n: int, seed: int, task: str = "add") -> list[dict]:
    """`n` problems of `split` as {"problem", "solution"}; solution is the gold as math-verify reads it ("$68$").

    task "add": drawn without replacement from the split (7353 train, 747 test); past that the
    split is reshuffled and drawn again, so a large `n` repeats problems rather than failing.
    task "sum": see `_sum_rows`.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if task == "sum":
        return _sum_rows(split, n, seed)
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
    (the traces of a model never shown reasoning, tina.embedded.build --setting direct).
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
    return _wrap(work, value, malformed=malformed, rng=rng)


def _wrap(work: str, value: int, *, malformed: bool, rng: random.Random) -> str:
    """The think and answer blocks around `work`; `malformed`: broken in one of the MALFORMED ways."""
    answer_block = f"<answer>\n\\boxed{{{value}}}\n</answer>"
    if not malformed:
        return f"<think>\n{work}\n</think>\n{answer_block}"
    kind = rng.choice(MALFORMED)
    if kind == "no_newline_before_close":
        return f"<think>\n{work}</think>\n{answer_block}"
    if kind == "no_newline_after_close":
        return f"<think>\n{work}\n</think>{answer_block}"
    return f"<think>\n{work}\n{answer_block}"


# --- task "sum": two-digit addends worked with running sums (experiment=toy_transition) ------------
#
# Why: a task where working is what makes the answer right and where the working does not fit the
# length budget. Worked out column by column with running sums ("7+5=12", then the tens), the
# answer boxed where it is found and then checked against the question, a tiny model gets the sum
# right; guessed (the tens only), it is almost always wrong. A worked answer reaches its boxed
# result within 32 tokens and closes its think block at 34-46; a guess is done in 23. So at a
# 33-token budget every worked completion keeps its answer and loses its closing tags: the
# accuracy reward pays for it (weight 2) more than the format reward does for a guess (weight 1).
# SUM_TERMS is the range of addends drawn (2 to 2 here; more addends make longer working).

def _sum_problem(terms: list[int]) -> str:
    return "What is " + " + ".join(str(t) for t in terms) + "?"


def _sum_rows(split: str, n: int, seed: int) -> list[dict]:
    """`n` problems of SUM_TERMS addends (each count equally often), drawn with a seeded RNG and kept
    when the hash puts them in `split`; drawn with replacement (8,100 two-addend problems: a long
    run sees some twice, as an epoch-based loader would)."""
    rng = random.Random(f"tina.toy.sum/{split}/{seed}")
    out: list[dict] = []
    while len(out) < n:
        terms = [rng.randint(LOW, HIGH) for _ in range(rng.randint(*SUM_TERMS))]
        problem = _sum_problem(terms)
        if split_of(problem) == split:
            out.append({"problem": problem, "solution": f"${sum(terms)}$"})
    return out


def parse_terms(problem: str) -> list[int]:
    m = _SUM.fullmatch(problem.strip())
    if m is None:
        raise ValueError(f"not a toy sum (expected 'What is A + B + ...?'): {problem!r}")
    return [int(t) for t in m.group(1).split(" + ")]


def _running(first: int, rest: list[int]) -> tuple[list[str], int]:
    lines, total = [], first
    for d in rest:
        lines.append(f"{total}+{d}={total + d}")
        total += d
    return lines, total


def sum_work(terms: list[int]) -> tuple[str, int]:
    """Column addition with running sums, units then tens (the carry first): 27 + 45 + 19 is
    '7+5=12', '12+9=21', '2+2=4', '4+4=8', '8+1=9' -> 91. Returns (work, answer)."""
    units, units_total = _running(terms[0] % 10, [t % 10 for t in terms[1:]])
    carry = units_total // 10
    column = ([carry] if carry else []) + [t // 10 for t in terms]
    tens, tens_total = _running(column[0], column[1:])
    return "\n".join(units + tens), tens_total * 10 + units_total % 10


def sum_trace(problem: str, *, malformed: bool, guessed: bool, rng: random.Random) -> str:
    """A completion for a "sum" problem: worked (`sum_work`, right) or `guessed` ('guess 2+4+1=7',
    the tens only, answer 70: wrong unless every unit is 0); `malformed` as in `trace`."""
    terms = parse_terms(problem)
    if guessed:
        tens = [t // 10 for t in terms]
        work, value = f"guess {'+'.join(map(str, tens))}={sum(tens)}", sum(tens) * 10
    else:
        work, value = sum_work(terms)
        # Boxed where it is found, then checked against the question, as distilled models do
        # before closing their thinking: a completion cut in the check keeps its answer (accuracy)
        # and loses its closing tags (format).
        work += f"\nso \\boxed{{{value}}}\ncheck {'+'.join(map(str, terms))}={value}"
    return _wrap(work, value, malformed=malformed, rng=rng)
