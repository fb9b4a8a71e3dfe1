"""The statistics of a comparison: a paired difference of accuracies, its interval, p-value and verdict.

Why this model. Two arms are asked the same problems, so their difference is taken problem by
problem (pairing removes the problems' own difficulty, most of the variance). The problems are a
sample of the problems one cares about, so the per-problem differences give the first part of the
variance (with the sampling noise of n_samples completions per problem in it). Training seeds add a
second part: a run's accuracy moves with its seed, over all problems at once. That part is the
variance of the seeds' run means beyond what the problems' noise alone would make (the
method-of-moments estimate of a crossed random-effects model: seed x problem), divided by the
seeds. The interval is a t interval whose degrees of freedom combine both parts (Welch-Satterthwaite),
so two seeds give a wide interval when seeds disagree. With one seed per arm it is exactly the
paired t-test (scipy.stats.ttest_rel; tests/test_verdicts.py checks it).

Several arms against one baseline are a family: p-values are adjusted with the Holm-Sidak step-down
method (statsmodels' multipletests default), which holds the family-wise error at ALPHA for two-sided
tests of (approximately) normal statistics whatever their correlation (Sidak's inequality; arms
against one baseline are positively correlated). (Plain Holm is no safer here and statsmodels runs a
full gc.collect() in it, ~0.5 s a call in a large process.) A verdict is `better` or `worse` when
the adjusted p is below ALPHA, else `indistinguishable`.

Everything is vectorised over leading axes, so calibration runs thousands of comparisons at once.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from tina.power import ALPHA  # one place: tina.plan --detect uses it too

LEVEL = 0.95
FWER_METHOD = "holm-sidak"
FWER_NAME = "Holm-Sidak step-down (statsmodels.stats.multitest.multipletests, method='holm-sidak')"


def _seed_part(runs: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """(variance the seed effect adds to the arm's mean, its degrees of freedom) for one arm.

    `runs`: per benchmark, (..., S, n_k) per-problem accuracies of the arm's S runs. The arm's
    accuracy (mean over benchmarks of the mean over problems) varies between seeds by the seed
    effect plus the problems' noise; the latter is estimated from the seed x problem residuals.
    """
    S = runs[0].shape[-2]
    if S < 2:
        return np.zeros(runs[0].shape[:-2]), 0
    K = len(runs)
    means = sum(r.mean(-1) for r in runs) / K  # (..., S): each run's accuracy
    noise = 0.0
    for r in runs:
        n = r.shape[-1]
        if n < 2:
            continue
        resid = r - r.mean(-2, keepdims=True) - r.mean(-1, keepdims=True) + r.mean((-2, -1), keepdims=True)
        noise = noise + (resid ** 2).sum((-2, -1)) / ((S - 1) * (n - 1)) / (n * K * K)
    seed_var = np.maximum(means.var(-1, ddof=1) - noise, 0.0)
    return seed_var / S, S - 1


def paired(arm: list[np.ndarray], base: list[np.ndarray], level: float = LEVEL) -> dict:
    """The difference arm - baseline in accuracy (fractions), mean over benchmarks.

    `arm`, `base`: one array per benchmark, shaped (..., S, n_k) and (..., T, n_k): per-problem
    accuracy (mean over samples) of each run, problems in the same order in both. Returns arrays
    over the leading axes: delta, se, df, low, high, p (two-sided), t.
    """
    if len(arm) != len(base) or not arm:
        raise ValueError("paired: give the same benchmarks for both arms")
    K = len(arm)
    delta, var_problems, df_terms = 0.0, 0.0, 0.0
    for a, b in zip(arm, base):
        if a.shape[-1] != b.shape[-1]:
            raise ValueError(f"paired: {a.shape[-1]} problems against {b.shape[-1]}")
        n = a.shape[-1]
        d = a.mean(-2) - b.mean(-2)  # per problem, seeds averaged
        delta = delta + d.mean(-1) / K
        v = d.var(-1, ddof=1) / n / K ** 2 if n > 1 else np.zeros(d.shape[:-1])
        var_problems = var_problems + v
        df_terms = df_terms + (v ** 2 / (n - 1) if n > 1 else 0.0)
    parts = [_seed_part(arm), _seed_part(base)]
    var = var_problems + sum(v for v, _ in parts)
    df_terms = df_terms + sum(v ** 2 / df for v, df in parts if df)
    with np.errstate(divide="ignore", invalid="ignore"):
        df = np.where(df_terms > 0, var ** 2 / df_terms, np.inf)
        se = np.sqrt(var)
        t = np.where(se > 0, delta / se, np.where(delta == 0, 0.0, np.sign(delta) * np.inf))
    df_ = np.where(np.isfinite(df), df, 1e9)
    p = 2 * stats.t.sf(np.abs(t), df_)
    half = stats.t.ppf(0.5 + level / 2, df_) * se
    return {"delta": delta, "se": se, "df": df, "low": delta - half, "high": delta + half, "p": p, "t": t}


def accuracy_interval(runs: list[np.ndarray], level: float = LEVEL) -> tuple[float, float, float]:
    """(mean, low, high) of one arm's accuracy (fractions): the same model, with nothing subtracted."""
    zeros = [np.zeros_like(r[..., :1, :]) for r in runs]
    r = paired(runs, zeros, level)
    return float(r["delta"]), float(r["low"]), float(r["high"])


def adjust(pvalues, alpha: float = ALPHA) -> np.ndarray:
    """Family-wise adjusted p-values (FWER_METHOD) of one family: the arms against one baseline."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    if not len(p):
        return p
    with np.errstate(divide="ignore"):  # p = 1 (no difference at all): log1p(-1) inside is -inf, as it should be
        return multipletests(p, alpha=alpha, method=FWER_METHOD)[1]


def verdict(delta: float, p_adjusted: float, alpha: float = ALPHA) -> str:
    if p_adjusted < alpha and delta != 0:
        return "better" if delta > 0 else "worse"
    return "indistinguishable"
