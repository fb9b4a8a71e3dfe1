"""Reward time per GRPO step for 48 completions, math checks serial vs in worker processes.

    python benchmarks/bench_rewards.py [--reps 2] [--workers 0 2 4] [--content realistic hostile]

A step here is what TRL does after generation: call the rewards (accuracy, format, length, cosine)
on 48 completions (6 prompts x G=8, `prompts=` passed so length groups them, `log_metric=` passed
so timeouts are counted), each completion new to the verdict cache. Contents:

- realistic: half the toy task's traces (`tina.toy.trace`: well formed, malformed, guessed), half
  MATH-style solutions (~1-2k characters of reasoning ending in a boxed fraction, root, interval,
  tuple, multiple of pi, ...), right and wrong;
- hostile: the worst cases in tina/math_check.py's comments, cycled: huge powers and factorials,
  5000 nested braces, a 3000-element set, a 3000-term sum of k^k, 1 MB strings, 100 kB of
  binary junk, unbalanced and deep LaTeX.

For each (content, workers) it prints the per-completion check time (max and p99, from
`math_check.judge`, uncached) and the end-to-end step time (all four rewards, median of --reps),
repetitions interleaved across worker counts. workers 0 = checks in the calling process.
Figures and the default they chose: benchmarks/RESULTS.md, section 6.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tina import math_check, toy  # noqa: E402
from tina.rewards import get_reward  # noqa: E402

N, G = 48, 8
STEP_REWARDS = ("accuracy", "format", "length", "cosine")

# (answer as boxed in the completion, gold as in a MATH solution)
MATH_ANSWERS = [
    ("\\frac{3}{4}", "$\\frac{3}{4}$"), ("2\\sqrt{3}", "$2\\sqrt{3}$"), ("(1, -2)", "$(1,-2)$"),
    ("[0, 5)", "$[0,5)$"), ("\\frac{\\pi}{6}", "$\\frac{\\pi}{6}$"), ("120^\\circ", "$120^\\circ$"),
    ("x^2 + 2x + 1", "$(x+1)^2$"), ("\\dfrac{7}{12}", "$\\frac{7}{12}$"), ("-\\frac{1}{2}", "$-0.5$"),
    ("3 + 4i", "$3+4i$"), ("\\{1, 2, 3\\}", "$\\{1,2,3\\}$"), ("10\\sqrt{2}", "$\\sqrt{200}$"),
]


def realistic(rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    completions, golds, prompts = [], [], []
    for p, row in enumerate(toy.rows("train", N // G // 2, seed=rng.randrange(10**6))):
        for _ in range(G):
            completions.append(toy.trace(row["problem"], row["solution"], malformed=rng.random() < 0.3,
                                         guessed=rng.random() < 0.3, rng=rng))
            golds.append(row["solution"])
            prompts.append(row["problem"])
    words = "so we substitute and simplify the expression then factor both sides and check".split()
    while len(completions) < N:
        answer, gold = rng.choice(MATH_ANSWERS)
        prompt = f"math problem {len(prompts) // G}"
        for _ in range(G):
            shown = answer if rng.random() < 0.6 else rng.choice(MATH_ANSWERS)[0]
            work = " ".join(rng.choice(words) for _ in range(rng.randint(150, 300)))
            completions.append(f"<think>\n{work} $x = {rng.randint(1, 99)}$.\n</think>\n"
                               f"The final answer is $\\boxed{{{shown}}}$.")
            golds.append(gold)
            prompts.append(prompt)
    return completions, golds, prompts


def _hostile_pool(rng: random.Random) -> list[str]:
    junk = bytes(rng.getrandbits(8) for _ in range(100_000)).decode("latin-1")
    return [
        "\\boxed{9^{9^{9^9}}}", "\\boxed{(10^{10})!}", "\\boxed{7^{10^{8}}}", "\\boxed{\\binom{10^{8}}{5 \\cdot 10^{7}}}",
        "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
        "\\boxed{\\{" + ",".join(str(i) for i in range(3000)) + "\\}}",
        "\\boxed{\\sum_{k=1}^{3000} k^{k}}",
        "\\boxed{" + "\\sqrt{" * 2000 + "2" + "}" * 2000 + "}",
        "x" * 1_000_000, "\\boxed{68}" + "x" * 1_000_000, junk, "\\boxed{" + junk[:20_000] + "}",
        "\\boxed{" + "}" * 5000 + "{" * 5000, "$$" * 10_000 + "\\boxed{\\frac{\\frac{}{}}{\\sqrt[}{}}\\left(\\right]}",
    ]


def hostile(rng: random.Random) -> tuple[list[str], list[str], list[str]]:
    pool = _hostile_pool(rng)
    # a unique suffix per completion, so that no verdict comes from the cache within a step
    completions = [pool[i % len(pool)] + f"\n(attempt {rng.randrange(10**9)})" for i in range(N)]
    return completions, ["$68$"] * N, [f"p{i // G}" for i in range(N)]


def one_step(completions, golds, prompts, rewards) -> tuple[float, float]:
    """(step seconds, timeouts logged by accuracy)."""
    logged: dict[str, float] = {}
    start = time.monotonic()
    for f in rewards:
        f(completions, solution=golds, prompts=prompts, log_metric=logged.__setitem__)
    return time.monotonic() - start, logged.get("rewards/accuracy_reward/timeouts", 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, os.cpu_count() or 2])
    ap.add_argument("--content", nargs="+", choices=("realistic", "hostile"), default=["realistic", "hostile"])
    args = ap.parse_args()
    rewards = [get_reward(name) for name in STEP_REWARDS]
    make = {"realistic": realistic, "hostile": hostile}
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; CHECK_SECONDS={math_check.CHECK_SECONDS}; "
          f"{N} completions, rewards {', '.join(STEP_REWARDS)}")
    for content in args.content:
        per_check: dict[int, list[float]] = {w: [] for w in args.workers}
        steps: dict[int, list[float]] = {w: [] for w in args.workers}
        timeouts: dict[int, list[float]] = {w: [] for w in args.workers}
        for rep in range(args.reps):
            order = args.workers if rep % 2 == 0 else args.workers[::-1]
            for workers in order:
                start = time.monotonic()
                math_check.set_workers(workers)
                if workers:
                    math_check.judge([("\\boxed{1}", "$1$")] * 2 * workers)  # wait until every worker is up
                    print(f"  (pool of {workers} started in {time.monotonic() - start:.2f} s)", flush=True)
                rng = random.Random(rep)
                completions, golds, prompts = make[content](rng)
                tasks = [(c[-math_check.MAX_PARSE_CHARS:], g) for c, g in zip(completions, golds)]
                per_check[workers] += [seconds for _, seconds in math_check.judge(tasks)]
                math_check._VERDICTS.clear()  # the step's completions are new to the cache
                seconds, n_timeouts = one_step(completions, golds, prompts, rewards)
                steps[workers].append(seconds)
                timeouts[workers].append(n_timeouts)
        math_check.set_workers(0)
        print(f"\n{content}: {N} completions per step, {args.reps} reps")
        print(f"{'workers':>8} {'check max s':>12} {'check p99 s':>12} {'check median s':>15} "
              f"{'step median s':>14} {'step max s':>11} {'timeouts/step':>14}")
        for workers in args.workers:
            checks = sorted(per_check[workers])
            p99 = checks[min(len(checks) - 1, int(0.99 * len(checks)))]
            print(f"{workers:>8} {checks[-1]:>12.3f} {p99:>12.3f} {statistics.median(checks):>15.4f} "
                  f"{statistics.median(steps[workers]):>14.3f} {max(steps[workers]):>11.3f} "
                  f"{statistics.mean(timeouts[workers]):>14.1f}")
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
