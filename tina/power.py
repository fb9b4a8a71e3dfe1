"""Power before compute: the smallest difference between two arms a planned evaluation can tell apart.

The model is analysis.verdicts' (a paired difference of per-problem accuracies, training seeds as a
random effect), taken before any data: two arms asked the same n problems, k completions per problem
per run (eval.n_samples x len(eval.seeds)), S training seeds per arm. Under "no difference", each
problem's paired difference has variance 2 p_i (1 - p_i) / (k S), so the difference of the arms'
mean accuracy has standard error

    se = sqrt(2 * spread / (n k S) + 2 * seed_sd^2 / S),   spread = mean_i p_i (1 - p_i)

and a two-sided test at ALPHA finds a true difference d with probability POWER when
d >= (t_{1-ALPHA/2} + t_{POWER}) * se (df n - 1). The spread comes from a base model's evaluation when
given (each problem's p_i estimated from its samples, unbiased for p(1-p)), else the worst case,
p_i = 1/2 for every problem (spread 1/4): the stated conservative assumption. It leaves out how much
the arms' difference varies between problems (unknown before the runs; it only adds variance).
"""

from __future__ import annotations

import math

from scipy import stats

ALPHA = 0.05
POWER = 0.80
WORST_SPREAD = 0.25  # p (1 - p) at p = 1/2: no problem's outcome varies more
# analysis.compare estimates the seed variance from the seeds themselves (never negative), which costs
# power that a known --seed-sd does not: measured on simulated sweeps with no seed effect, the planned
# 80% became 57% (2 seeds), 64% (3), 72% (5), 74% (10) (tests/test_verdicts.py checks 1 seed: 80%).
SEEDS_NOTE = ("with 2+ seeds per arm the comparison also estimates the seed variance from them: expect "
              "less power than 80% at the difference shown (57% at 2 seeds, 64% at 3, 72% at 5, 74% at 10)")


def detectable(se: float, df: float = math.inf, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference found with probability `power` (same units as se)."""
    df = 1e9 if not math.isfinite(df) else df
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * se)


def spread(per_problem: list[float], k: int) -> float:
    """mean_i p_i (1 - p_i) from each problem's mean over k samples (unbiased: the k / (k - 1) factor).
    With one sample a problem's p_i cannot be told from its outcome: m (1 - m) of the mean accuracy m,
    which is at least the mean of p_i (1 - p_i) (Jensen)."""
    vals = [float(v) for v in per_problem if v is not None and not math.isnan(float(v))]
    if not vals:
        return WORST_SPREAD
    if k < 2:
        m = sum(vals) / len(vals)
        return m * (1 - m)
    return sum(v * (1 - v) for v in vals) / len(vals) * k / (k - 1)


def se_terms(spreads_and_counts: list[tuple[float, int]], seed_sd: float = 0.0) -> tuple[float, float]:
    """(A, B) with se^2 = A / (k S) + B / S for the mean over the given benchmarks ((spread, n) each)."""
    K = len(spreads_and_counts)
    return 2 * sum(s / n for s, n in spreads_and_counts) / K ** 2, 2 * seed_sd ** 2


def mdd(a: float, b: float, k: int, seeds: int, n: int) -> float:
    return detectable(math.sqrt(a / (k * seeds) + b / seeds), n - 1)


def needed_samples(a: float, b: float, seeds: int, n: int, target: float) -> int | None:
    """Completions per problem per run (k) that bring the detectable difference to `target`; None if
    the seeds' own variation alone is above it."""
    m = detectable(1.0, n - 1)
    room = (target / m) ** 2 - b / seeds
    return None if room <= 0 else max(1, math.ceil(a / (seeds * room)))


def needed_seeds(a: float, b: float, k: int, n: int, target: float) -> int:
    m = detectable(1.0, n - 1)
    return max(1, math.ceil((a / k + b) / (target / m) ** 2))
