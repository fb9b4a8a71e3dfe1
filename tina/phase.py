"""Detect the format reward's acquisition and its destabilisation (the phase transition) in a run.

What the paper saw (Tina, arXiv 2504.15777): during LoRA-GRPO the format reward rises, peaks and
then destabilises (falls, gets noisy), while the mean completion length falls to a minimum and then
rebounds; the best held-out checkpoint sits at or just before that turning point. Some runs (LIMR)
show no transition at all. :func:`detect` finds that turning point in a run's training metrics, or
says there is none, and returns the evidence it used so a human can check it.

How, and WHY built this way
---------------------------
1. Smoothing by binning. The series (one value per logged step) is cut into non-overlapping bins of
   ``smooth`` consecutive points (default: as many as needed to leave at most ``max_points`` = 100
   bins, so 1 for short runs) and each bin is replaced by its mean. Non-overlapping means keep the
   noise of neighbouring points independent, which the penalty below relies on (a rolling mean
   would correlate them and make every wiggle look significant), and they bound the cost of the
   change-point search, which grows with the square of the bins: 100 bins find the same
   transitions on the synthetic set as 200 (the refinement in 4 works on the raw points) in half
   the time, and 80 lose some. The same window, as a centred rolling mean, gives the
   "smoothed" series whose peak/trough is reported.
2. Noise estimate. sigma = 1.4826 * MAD(first differences) / sqrt(2): a robust per-point noise SD
   that trends, level shifts and the odd outlier barely move. It is computed on the raw series
   (``noise_sigma``, the unit of effect sizes) and on the binned series (``bin_sigma``, the unit
   of the penalty, so that any autocorrelation left in real runs widens it).
3. Change points with ``ruptures``. ``ruptures.Pelt`` searches for the segmentation of the binned
   series into straight-line pieces (least-squares line per segment; a custom ruptures cost with
   O(1) segment cost from cumulative sums) that minimises RSS + pen * (number of segments), with
   pen = ``pen_scale`` * bin_sigma^2 * ln(n_bins). ``pen_scale`` = 3 is BIC for a segment's three
   free parameters (slope, intercept, position): a change point is kept only when it explains
   more than noise would. Piecewise-LINEAR rather than piecewise-constant because the events
   are changes of direction (rise -> fall), not level shifts, and a saturating rise is fitted
   as a few rising pieces rather than a staircase of spurious change points. Segments are at
   least ``min_segment`` bins long (default max(3, 4% of the bins)): a fall must last to count.
4. Turns per metric. Each piece gets a slope t-statistic (slope / (bin_sigma / sqrt(Sxx))) and is
   "rising" (t >= t_min), "falling" (t <= -t_min) or "flat" (t_min = 3). For the format reward a
   PEAK turn is a change point where
   - the piece before is not falling (rising, or flat at the top),
   - the piece after starts the descent: it falls (t <= -t_min) or lies wholly at least the effect
     size below the top (a level drop). Without this, the knee where a rise meets a plateau,
     followed much later by a fall, would count as the turn;
   - the fitted curve drops, over the run of non-rising pieces that follows, by at least
     ``min_effect`` (1.0) x noise_sigma: larger than the step-to-step noise. (Statistical
     significance is the penalty's job; this is the minimum effect SIZE.)
   A "noisier" format reward is covered by the same rule: the format reward is a batch mean of 0/1
   scores, so near its ceiling it can only get noisier by getting lower. For the completion length
   a TROUGH turn is the mirror image (not rising before, rebounds by the effect size after).
   Refinement (``refine=True``): the coarse change point comes from a DIScontinuous fit on bins,
   which tends to swallow a short plateau into the falling piece after it. So the turn is placed
   by a continuous line with two knots, fitted by least squares to the raw points from the middle
   of the piece before to the end of the piece after (the three regimes that can meet there:
   rise -> plateau -> fall, plateau -> fall -> bottom, or a sharp peak); the turn is the first
   knot where a piece that does not fall is followed by one that falls by the effect size. On the
   synthetic set this lifts the share of runs within +-2% of the run length from 64% to 86%
   (65% -> 82% on a further 100 curves, with 5 misses instead of 8).
   ``coarse_step`` keeps the unrefined change point (last logged step of the piece before it).
5. Two events. ``acquisition_step`` is the format reward's rise (the format being learnt); ``step``
   its destabilisation (the paper's transition: a fall after it held). A false alarm costs more
   than a miss (it can stop a run early), so each needs its level change to stand out of the noise
   on the RAW points: a one-sided Mann-Whitney U test between a window before and one after
   (p <= ``P_MAX``), which lone spikes (a reward that fires once in a run and makes a fit's noise
   estimate ~0) cannot pass. Each comes with a reason and a confidence ("high" >= 4, "medium" >= 2
   noise SDs; below that it is not reported).
   - Acquisition: the largest rise of the rolling mean up to its top, from the last point at its
     low to 90% of the way up, kept when the level after (from there, while the rolling mean stays
     above halfway) differs from the level before (up to the low) by >= 2 pooled SDs and >= a
     quarter of the series' 1-99% range up to the hold after the rise (a later fall to 0 does not
     shrink the rise); reported where the rolling mean is halfway up.
     Slow drifts over the whole run (a reader sees no step) fail the SD test.
   - Destabilisation: a peak turn of the format reward (4) whose top lies in the upper half of the
     series' range and after the acquisition, whose lower level lasts (the rank test above).
     The first such turn that counts is the destabilisation (a run can fall again later, further).
     Paired with a completion-length trough within ``tolerance`` steps (default: max(10% of the
     logged span, 2 bins)), as the paper saw, it is "high" and the step is the earlier of the two
     turns. Alone, it counts when large (>= 4 noise SD: "high"), or when the share of completions
     cut at the length budget (``completions/clipped_ratio``) or of groups without reward spread
     (``frac_reward_zero_std``) rises by >= ``CUT_RISE`` across it, which explains it; a medium
     fall with neither is kept only with ``require_both=False``. ``signals`` gives those shares,
     the entropy and the length before and after the fall. With no format key the length's trough
     alone is reported ("medium").
   Older TRL and notebook runs name the format reward differently (``FORMAT_FALLBACKS``): when the
   default key is absent, the first of those present is used; keys with spaces around slashes
   are TRL's (tina.metrics.normalise_key).

Measured accuracy (tests/test_phase.py, 50 synthetic runs of 300-2000 steps with realistic noise):
88% of transitions within +-2% of the run length, 96% within +-5%, 1 missed (a noisy short run);
no false transition on flat, rising-then-plateau or LIMR-like curves. The figures are stated and
checked there.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from typing import Iterable

import numpy as np
import pandas as pd

from tina.metrics import metrics_path, normalise_key, read_metrics
from tina.run_dir import saved_steps  # the run directory's layout has one owner

__all__ = ["detect", "best_checkpoint", "no_signal_streak", "saved_steps", "main", "FORMAT_KEY", "LENGTH_KEY",
           "CLIPPED_KEY", "ZERO_STD_KEY", "ENTROPY_KEY"]

FORMAT_KEY = "rewards/format_reward/mean"
LENGTH_KEY = "completions/mean_length"

DEFAULTS = {
    "max_points": 100,   # bins at most; sets the default smoothing window (more: slower, no more accurate)
    "smooth": None,      # bin width in logged points (None: ceil(n / max_points))
    "min_segment": None,  # minimum piece length in bins (None: max(3, 4% of the bins))
    "pen_scale": 3.0,    # penalty = pen_scale * bin_sigma^2 * ln(n_bins)  (3 = BIC)
    "t_min": 3.0,        # slope t-statistic for a piece to be rising/falling
    "min_effect": 1.0,   # a turn's fall/rebound in units of the raw noise SD
    "tolerance": None,   # steps between the two metrics' turns (None: max(10% span, 2 bins))
    "require_both": True,  # False: a medium fall of the format alone counts without the length or cut share
    "refine": True,      # move each turn to the best continuous hinge on the raw points
}
MIN_POINTS = 8  # fewer usable points than this: the metric counts as unavailable


class _PiecewiseLinearRSS:
    """RSS of a least-squares line on a segment; signal columns are (y, x). O(1) per segment."""

    model = "piecewise_linear"
    min_size = 3

    def fit(self, signal):
        s = np.asarray(signal, dtype=float)
        self.signal = s  # ruptures' estimators read cost.signal.shape
        y, x = s[:, 0], s[:, 1]
        # Python lists: Pelt calls error() thousands of times per series, and indexing a list
        # with an int is ~10x faster than indexing a numpy array (no scalar boxing)
        z = lambda a: np.concatenate([[0.0], np.cumsum(a)]).tolist()  # noqa: E731
        self._n, self._x, self._y = z(np.ones_like(x)), z(x), z(y)
        self._xx, self._yy, self._xy = z(x * x), z(y * y), z(x * y)
        return self

    def stats(self, start, end):
        n = self._n[end] - self._n[start]
        sx, sy = self._x[end] - self._x[start], self._y[end] - self._y[start]
        sxx = self._xx[end] - self._xx[start] - sx * sx / n
        syy = self._yy[end] - self._yy[start] - sy * sy / n
        sxy = self._xy[end] - self._xy[start] - sx * sy / n
        return n, sx / n, sy / n, sxx, syy, sxy

    def error(self, start, end):
        n, _, _, sxx, syy, sxy = self.stats(start, end)
        rss = syy - sxy * sxy / sxx if sxx > 1e-12 else syy
        return max(rss, 0.0)


@functools.cache
def _piecewise_linear_cost() -> type:
    """The cost as ruptures wants it (a BaseCost). ruptures is imported here, not with the module:
    it loads scipy.stats (~1.2 s of a 1.5 s `import tina.train`), which a process that only
    submits a job or prints a status never needs."""
    from ruptures.base import BaseCost

    return type("_PiecewiseLinearCost", (_PiecewiseLinearRSS, BaseCost), {})


def _robust_sigma(y: np.ndarray) -> float:
    d = np.diff(np.asarray(y, dtype=float))
    if len(d) < 2:
        return 0.0
    mad = float(np.median(np.abs(d - np.median(d))))
    s = 1.4826 * mad / math.sqrt(2)
    if s <= 0:  # quantised series (e.g. mostly identical rewards): fall back to the plain SD
        s = float(np.std(d)) / math.sqrt(2)
    return s


def _f(v):
    """JSON-safe float."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def _series(df: pd.DataFrame, key: str):
    if key not in df.columns or "step" not in df.columns:
        return None, None
    y = pd.to_numeric(df[key], errors="coerce").to_numpy(dtype=float)
    x = df["step"].to_numpy(dtype=float)
    ok = np.isfinite(y) & np.isfinite(x)
    return x[ok], y[ok]


def _hinge_fit(xx, yy, knots):
    """Least squares of y on [1, x, max(0, x - x[a]), max(0, x - x[b])] for each knot pair (a, b).

    ``xx`` sorted; ``knots``: (P, 2) int array of point indices with a < b. The normal equations
    are built from suffix sums in O(1) per pair. Returns (rss (P,), coef (P, 4))."""
    def suffix(v):
        return np.concatenate([np.cumsum(v[::-1])[::-1], [0.0]])

    N, S1, S2 = suffix(np.ones_like(xx)), suffix(xx), suffix(xx * xx)
    Y, XY, YY = suffix(yy), suffix(xx * yy), float(yy @ yy)
    a, b = knots[:, 0], knots[:, 1]
    ca, cb = xx[a], xx[b]

    def hinge(k, c):  # sums over i >= k of (x - c), x (x - c), (x - c)^2, y (x - c)
        return (S1[k] - c * N[k], S2[k] - c * S1[k], S2[k] - 2 * c * S1[k] + c * c * N[k],
                XY[k] - c * Y[k])

    ha, hb = hinge(a, ca), hinge(b, cb)
    cross = S2[b] - (ca + cb) * S1[b] + ca * cb * N[b]  # sum (x - ca)(x - cb) over i >= b
    P = len(knots)
    xtx = np.empty((P, 4, 4))
    xtx[:, 0, 0], xtx[:, 0, 1], xtx[:, 1, 1] = N[0], S1[0], S2[0]
    xtx[:, 0, 2], xtx[:, 1, 2], xtx[:, 2, 2] = ha[0], ha[1], ha[2]
    xtx[:, 0, 3], xtx[:, 1, 3], xtx[:, 3, 3] = hb[0], hb[1], hb[2]
    xtx[:, 2, 3] = cross
    for r, c in ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)):
        xtx[:, r, c] = xtx[:, c, r]
    xty = np.column_stack([np.full(P, Y[0]), np.full(P, XY[0]), ha[3], hb[3]])
    coef = np.linalg.solve(xtx + 1e-12 * np.eye(4), xty[..., None])[..., 0]
    rss = YY - np.einsum("pi,pi->p", coef, xty)
    return rss, coef


def _refine(x, y, lo, hi, coarse, sign, need, grid=30):
    """Locate a turn on the raw points in [lo, hi] with a continuous two-hinge line.

    The coarse change point comes from a discontinuous piecewise-linear fit on binned data, which
    tends to swallow a short plateau into the falling piece after it (or the start of a fall into
    the plateau). A continuous line with two knots covers the three regimes a window around a turn
    can hold (rise -> plateau -> fall, plateau -> fall -> bottom, or a sharp peak), so its knots
    sit where the slope really changes. Knots are searched on a grid of ``grid`` positions, then
    each is refined to single logged steps. The turn is the first knot where a piece that does not
    fall is followed by one that falls by at least ``need`` (z = sign*y; peaks of z). Falls back
    to ``coarse`` when the window is too short or no knot qualifies.
    """
    idx = np.where((x >= lo) & (x <= hi))[0]
    if len(idx) < 12:
        return coarse
    span = max(x[idx[-1]] - x[idx[0]], 1e-12)
    xx = (x[idx] - x[idx[0]]) / span
    zz = sign * y[idx]
    m = max(3, len(idx) // 15)  # points at least at each end and between knots
    g = np.unique(np.linspace(m, len(idx) - 1 - m, min(grid, len(idx) - 2 * m)).round().astype(int))
    pairs = np.array([(a, b) for a in g for b in g if b - a >= m] or [(g[0], g[-1])])
    rss, _ = _hinge_fit(xx, zz, pairs)
    a, b = pairs[int(np.argmin(rss))]
    step = max(1, (g[-1] - g[0]) // max(len(g) - 1, 1))
    for which in (0, 1):  # local refinement of each knot to single points
        lo_i = max(m, (a, b)[which] - step)
        hi_i = min(len(idx) - 1 - m, (a, b)[which] + step)
        cand = np.arange(lo_i, hi_i + 1)
        pp = np.array([(c, b) if which == 0 else (a, c) for c in cand])
        pp = pp[pp[:, 1] - pp[:, 0] >= m] if len(pp) else pp
        if len(pp):
            r, _ = _hinge_fit(xx, zz, pp)
            a, b = pp[int(np.argmin(r))]
    _, coef = _hinge_fit(xx, zz, np.array([[a, b]]))
    _, b0, d1, d2 = coef[0]
    slopes = [b0, b0 + d1, b0 + d1 + d2]
    bounds = [0.0, xx[a], xx[b], 1.0]
    change = [s * (bounds[i + 1] - bounds[i]) for i, s in enumerate(slopes)]  # z change per piece
    for i, knot in ((0, a), (1, b)):
        if change[i] > -need and change[i + 1] <= -need:
            return int(x[idx[knot]])
    return coarse


def _analyse(x, y, kind: str, p: dict) -> dict:
    """Change points and turns of one metric. kind: "peak" (format) or "trough" (length)."""
    n = len(x)
    width = int(p["smooth"]) if p["smooth"] else max(1, math.ceil(n / p["max_points"]))
    starts = np.array([g[0] for g in np.array_split(np.arange(n), math.ceil(n / width))])
    sizes = np.diff(np.append(starts, n))
    xb = np.add.reduceat(x, starts) / sizes
    yb = np.add.reduceat(y, starts) / sizes
    first, last = x[starts], x[starts + sizes - 1]
    nb = len(starts)
    noise = _robust_sigma(y)
    bin_sigma = _robust_sigma(yb) if nb > 3 else noise / math.sqrt(width)
    scale = max(float(np.max(np.abs(y))), 1.0)
    noise = max(noise, 1e-9 * scale)
    bin_sigma = max(bin_sigma, 1e-9 * scale)
    min_seg = int(p["min_segment"]) if p["min_segment"] else max(3, round(0.04 * nb))

    smooth = pd.Series(y).rolling(width, center=True, min_periods=1).mean().to_numpy()
    ev = {
        "available": True,
        "n_points": int(n),
        "smooth_window": int(width),
        "n_bins": int(nb),
        "noise_sigma": _f(noise),
        "bin_sigma": _f(bin_sigma),
        "min_segment_bins": int(min_seg),
        "smoothed": {
            "first": _f(smooth[0]), "last": _f(smooth[-1]), "mean": _f(smooth.mean()),
            "min": _f(smooth.min()), "argmin_step": int(x[int(np.argmin(smooth))]),
            "max": _f(smooth.max()), "argmax_step": int(x[int(np.argmax(smooth))]),
        },
    }
    if nb < 2 * min_seg:
        ev.update(change_points=[], segments=[], turns=[], penalty=None,
                  note=f"too few bins ({nb}) for two segments of {min_seg}")
        return ev

    # x in bin units keeps the cumulative sums well conditioned
    xs = (xb - xb[0]) / max(xb[-1] - xb[0], 1e-12) * (nb - 1)
    import ruptures as rpt

    cost = _piecewise_linear_cost()()  # Pelt.fit fits it; its stats() then describe the segments
    pen = p["pen_scale"] * bin_sigma**2 * math.log(nb)
    bkps = rpt.Pelt(custom_cost=cost, min_size=min_seg, jump=1).fit(
        np.column_stack([yb, xs])).predict(pen=pen)
    bounds = list(zip([0] + bkps[:-1], bkps))

    segs = []
    for s, e in bounds:
        _, mx, my, sxx, _, sxy = cost.stats(s, e)
        slope = sxy / sxx if sxx > 1e-12 else 0.0
        se = bin_sigma / math.sqrt(sxx) if sxx > 1e-12 else float("inf")
        t = slope / se if se > 0 else 0.0
        y0, y1 = my + slope * (xs[s] - mx), my + slope * (xs[e - 1] - mx)
        trend = "rising" if t >= p["t_min"] else "falling" if t <= -p["t_min"] else "flat"
        segs.append({
            "start_step": int(first[s]), "end_step": int(last[e - 1]), "bins": int(e - s),
            "fit_start": _f(y0), "fit_end": _f(y1), "delta": _f(y1 - y0),
            "slope_per_step": _f((y1 - y0) / max(last[e - 1] - first[s], 1)),
            "t": _f(t), "trend": trend, "_s": s, "_e": e,
        })

    sign = 1.0 if kind == "peak" else -1.0  # work on z = sign*y: a turn is always a z-peak
    up, down = ("rising", "falling") if sign > 0 else ("falling", "rising")
    need = p["min_effect"] * noise
    turns = []
    for k in range(len(segs) - 1):
        if segs[k]["trend"] == down:  # a peak needs a piece before it that is not falling
            continue
        top = sign * segs[k]["fit_end"]
        nxt = segs[k + 1]
        # the descent must start here: the next piece falls, or lies wholly an effect size lower
        if nxt["trend"] != down and top - max(sign * nxt["fit_start"], sign * nxt["fit_end"]) < need:
            continue
        run = []
        for seg in segs[k + 1:]:
            if seg["trend"] == up:
                break
            run.append(seg)
        if not run:
            continue
        low = min(min(sign * r["fit_start"], sign * r["fit_end"]) for r in run)
        effect = top - low
        if effect < need:
            continue
        lo, hi = segs[k]["_s"], run[-1]["_e"]
        win = np.where((x >= first[lo]) & (x <= last[hi - 1]))[0]
        j = win[int(np.argmax(sign * smooth[win]))]
        coarse = int(last[segs[k]["_e"] - 1])
        step = coarse
        if p["refine"]:
            lo_step = (segs[k]["start_step"] + segs[k]["end_step"]) / 2
            step = _refine(x, y, lo_step, nxt["end_step"], coarse, sign, need)
        turns.append({
            "step": step,
            "coarse_step": coarse,
            "kind": kind,
            "fit_value": _f(segs[k]["fit_end"]),
            "effect": _f(effect), "effect_in_noise_sd": _f(effect / noise),
            "after_until_step": int(run[-1]["end_step"]),
            "bracket": [int(segs[k]["start_step"]), int(run[-1]["end_step"])],
            ("peak" if kind == "peak" else "trough"): {"step": int(x[j]), "value": _f(smooth[j])},
        })
    for seg in segs:
        seg.pop("_s"), seg.pop("_e")
    ev.update(
        penalty=_f(pen),
        change_points=[int(last[b - 1]) for b in bkps[:-1]],
        segments=segs,
        turns=turns,
    )
    return ev


# Older TRL and notebook runs name the same metrics differently. Used only when the caller keeps
# the default key and the run lacks it; the first present wins (a strict format check before a
# lenient one: the strict one is what "the format" means, the lenient one pays partial credit).
FORMAT_FALLBACKS = ("rewards/format_reward", "rewards/strict_format_reward_func",
                    "rewards/match_format_exactly", "rewards/formatting_reward_func",
                    "rewards/format_and_language_reward_func", "rewards/valid_json_reward")
LENGTH_FALLBACKS = ("completion_length",)
# The signals that explain a destabilisation (TRL 1.16 logs all three at every logging step).
CLIPPED_KEY = "completions/clipped_ratio"  # share of completions cut at max_completion_length
ZERO_STD_KEY = "frac_reward_zero_std"      # share of groups whose rewards are all equal: no signal
ENTROPY_KEY = "entropy"
# Confidence of an event by its effect in units of the per-step noise SD (the penalty already made
# it significant; this says how far above the noise it stands). Below "medium" it is not reported:
# a false alarm can stop a run early, a miss only costs the steps to the end.
CONFIDENCE = (("high", 4.0), ("medium", 2.0))
P_MAX = 1e-3     # a level change counts when a rank test puts it this far out of chance
CUT_RISE = 0.10  # the cut share rising this much across a fall corroborates it (the length cap)


def _resolve(df: pd.DataFrame, key: str, default: str, fallbacks: tuple) -> str:
    if key != default or key in df.columns:
        return key
    for k in fallbacks:
        for cand in (f"{k}/mean", k):
            if cand in df.columns and pd.to_numeric(df[cand], errors="coerce").notna().sum():
                return cand
    return key


def _confidence(effect_sd: float) -> str | None:
    return next((label for label, least in CONFIDENCE if effect_sd >= least), None)


def _mean_between(df: pd.DataFrame, key: str, lo: float, hi: float) -> float | None:
    if key not in df.columns:
        return None
    v = pd.to_numeric(df.loc[(df["step"] >= lo) & (df["step"] <= hi), key], errors="coerce").dropna()
    return _f(v.mean()) if len(v) else None


def _windows(x, y, before: tuple, after: tuple) -> dict:
    """Did the level change between two step windows, beyond noise? Mann-Whitney U (one-sided: the
    ``after`` window higher) on the raw points, and the difference of means in pooled SDs. Raw
    points, not a fit: a few lone spikes (a reward that fires once in a run) move a fit's noise
    estimate to ~0 and would make any wiggle look certain; they barely move a rank test."""
    from scipy.stats import mannwhitneyu

    b = y[(x >= before[0]) & (x <= before[1])]
    a = y[(x >= after[0]) & (x <= after[1])]
    if len(a) < 3 or len(b) < 3:
        return {"diff": 0.0, "effect_sd": 0.0, "p": 1.0, "n": [int(len(b)), int(len(a))]}
    sd = math.sqrt((np.var(a, ddof=1) + np.var(b, ddof=1)) / 2)
    diff = float(a.mean() - b.mean())
    p = float(mannwhitneyu(a, b, alternative="greater").pvalue) if diff > 0 else float(
        mannwhitneyu(b, a, alternative="greater").pvalue)
    return {"diff": diff, "effect_sd": abs(diff) / max(sd, 1e-9 * max(abs(diff), 1.0)), "p": p,
            "n": [int(len(b)), int(len(a))]}


def _acquisition(x, y, width: int) -> dict | None:
    """The format reward's rise: the largest increase of its rolling mean, kept when the level after
    it differs from the level before it beyond noise (``_windows``) by at least a quarter of the
    series' range (a drift or lone spikes are not the format being learnt). Reported at the step
    where the rolling mean crosses halfway between the two levels."""
    n = len(y)
    w = max(3, width, n // 20)
    sm = pd.Series(y).rolling(w, center=True, min_periods=1).mean().to_numpy()
    low_before = np.minimum.accumulate(sm)
    # the rise to the format's top: a later rebound after a destabilisation can climb further from a
    # lower low, and is not the format being learnt
    top = int(np.argmax((sm - low_before)[: int(np.argmax(sm)) + 1]))
    i = int(np.nonzero(sm[: top + 1] == low_before[top])[0][-1])  # the last point at the low
    if top <= i:
        return None
    j = i + int(np.argmax(sm[i: top + 1] >= sm[i] + 0.9 * (sm[top] - sm[i])))  # 90% of the way up
    half = (sm[i] + sm[j]) / 2
    k = i + int(np.argmax(sm[i: j + 1] >= half))
    hold = max(3, w, n // 10)
    # before: up to `hold` points to the low; with fewer than 5 before it (the run starts low), on
    # from the low, not past halfway
    pre = (x[max(0, i - hold)], x[i if i >= 4 else max(i, min(k - 1, hold - 1))])
    # after: up to `hold` points from 90% of the way up while the rolling mean stays above halfway (a
    # fall soon after the rise is the next event, not the level the rise reached)
    below = np.nonzero(sm[j: j + hold + 1] < half)[0]
    post = (x[j], x[min(n - 1, j + (int(below[0]) - 1 if len(below) else hold))])
    t = _windows(x, y, pre, post)
    upto = y[: min(n, j + hold + 1)]  # the range up to the hold: a later fall to 0 must not shrink the rise
    span = float(np.quantile(upto, 0.99) - np.quantile(upto, 0.01))
    conf = _confidence(t["effect_sd"])
    if t["diff"] <= 0 or t["p"] > P_MAX or conf is None or t["diff"] < 0.25 * span:
        return None
    step = int(x[k])
    return {"step": step, "start_step": int(x[i]), "end_step": int(x[j]),
            "from": _f(sm[i]), "to": _f(sm[j]), "effect_in_sd": _f(t["effect_sd"]),
            "p_value": _f(t["p"]), "confidence": conf,
            "reason": (f"format reward rises from {sm[i]:.3g} to {sm[j]:.3g} between steps "
                       f"{int(x[i])} and {int(x[j])} ({t['effect_sd']:.1f} SD, p={t['p']:.1g}); "
                       f"halfway at step {step}")}


def _sag(x, y, width: int, acq: dict | None) -> dict | None:
    """The largest lasting fall of the rolling mean from its running top, after the acquisition.
    Kept when the `hold` points before its start sit above the `hold` points around its low by the
    rank test and by >= a tenth of the series' 1-99% range; reported where the rolling mean
    leaves the top."""
    n = len(y)
    w = max(3, width, n // 20)
    hold = max(3, w, n // 10)
    sm = pd.Series(y).rolling(w, center=True, min_periods=1).mean().to_numpy()
    first = 0 if acq is None else int(np.searchsorted(x, acq["end_step"]))
    if n - first < 2 * hold:
        return None
    top = np.maximum.accumulate(sm[first:])
    m = first + int(np.argmax(top - sm[first:]))
    p = first + int(np.argmax(sm[first: m + 1]))
    drop = sm[p] - sm[m]
    if drop <= 0:
        return None
    start = p + int(np.nonzero(sm[p: m + 1] >= sm[p] - 0.1 * drop)[0][-1])
    low = (x[max(start, m - hold // 2)], x[min(n - 1, m + hold // 2)])
    t = _windows(x, y, (x[max(0, start - hold)], x[start]), low)
    span = float(np.quantile(y, 0.99) - np.quantile(y, 0.01))
    # pooled SDs of a batch mean: >= 2 is a fall no reader doubts; >= 0.5 is one a reader sees
    # but batch noise could make (reported only when the cut share or require_both=False backs it)
    conf = "high" if t["effect_sd"] >= 2 else "medium" if t["effect_sd"] >= 0.5 else None
    if t["diff"] >= 0 or t["p"] > P_MAX or conf is None or -t["diff"] < 0.1 * span:
        return None
    return {"step": int(x[start]), "from_step": int(x[max(0, start - hold)]), "low_step": int(x[m]),
            "drop": _f(-t["diff"]), "effect_in_sd": _f(t["effect_sd"]), "p_value": _f(t["p"]), "confidence": conf,
            "reason": (f"format reward sags by {-t['diff']:.3g} ({t['effect_sd']:.1f} SD, p={t['p']:.1g}) "
                       f"from step {int(x[start])} to its low at step {int(x[m])}")}


def _signals(df: pd.DataFrame, hold: tuple, after: tuple) -> dict:
    """Each explaining signal's mean over the hold before a fall and over the fall."""
    return {key: {"before": _mean_between(df, key, *hold), "after": _mean_between(df, key, *after)}
            for key in (CLIPPED_KEY, ZERO_STD_KEY, ENTROPY_KEY, LENGTH_KEY) if key in df.columns}


def _why(sig: dict) -> str:
    parts = []
    for key, name in ((CLIPPED_KEY, "cut at the length budget"), (ZERO_STD_KEY, "groups without reward spread")):
        b, a = (sig.get(key) or {}).get("before"), (sig.get(key) or {}).get("after")
        if b is not None and a is not None and a - b >= CUT_RISE:
            parts.append(f"{name} {b:.0%} -> {a:.0%}")
    return "; ".join(parts)


def detect(
    df_or_path,
    *,
    format_key: str = FORMAT_KEY,
    length_key: str = LENGTH_KEY,
    max_points: int = DEFAULTS["max_points"],
    smooth: int | None = DEFAULTS["smooth"],
    min_segment: int | None = DEFAULTS["min_segment"],
    pen_scale: float = DEFAULTS["pen_scale"],
    t_min: float = DEFAULTS["t_min"],
    min_effect: float = DEFAULTS["min_effect"],
    tolerance: int | None = DEFAULTS["tolerance"],
    require_both: bool = DEFAULTS["require_both"],
    refine: bool = DEFAULTS["refine"],
) -> dict:
    """Find the format acquisition and the destabilisation of a run (module docstring: the rules).

    ``df_or_path``: a metrics DataFrame (``step`` + metric columns), a metrics.jsonl path or a run
    directory. A path that does not exist raises FileNotFoundError.

    Returns a JSON-serialisable dict: ``step`` (the destabilisation, int or None), ``reason``,
    ``confidence`` ("high", "medium" or None); ``acquisition_step``, ``acquisition_reason``,
    ``acquisition_confidence`` likewise for the format reward's rise; ``format_step`` /
    ``length_step`` (each metric's chosen turn or None), ``signals`` (cut share, share of groups
    without reward spread, entropy, length: mean over the hold before the fall and over the fall),
    ``tolerance`` (steps), ``params``, and ``evidence`` = {"format": {...}, "length": {...},
    "combination": str} where each metric's entry holds ``key``, ``available``, ``noise_sigma``,
    ``smooth_window``, ``change_points`` (steps), ``segments`` (fit per piece with trend and t),
    ``turns`` (each with the peak/trough of the smoothed series it brackets and its effect size)
    and ``smoothed`` (min/max/first/last/mean).
    """
    if isinstance(df_or_path, pd.DataFrame):
        df = df_or_path.rename(columns=lambda c: normalise_key(c) if isinstance(c, str) else c)
        if "step" in df.columns and not df["step"].is_monotonic_increasing:
            df = df.sort_values("step", kind="stable")
    else:
        mp = metrics_path(df_or_path)
        if not mp.is_file():
            raise FileNotFoundError(f"no metrics file at {mp}")
        df = read_metrics(mp)
    format_key = _resolve(df, format_key, FORMAT_KEY, FORMAT_FALLBACKS)
    length_key = _resolve(df, length_key, LENGTH_KEY, LENGTH_FALLBACKS)
    params = {"max_points": max_points, "smooth": smooth, "min_segment": min_segment,
              "pen_scale": pen_scale, "t_min": t_min, "min_effect": min_effect,
              "tolerance": tolerance, "require_both": require_both, "refine": refine}

    evidence, series = {}, {}
    spans, widths = [], []
    for role, key, kind in (("format", format_key, "peak"), ("length", length_key, "trough")):
        x, y = _series(df, key)
        if x is None or len(x) < MIN_POINTS:
            why = "key missing" if x is None else f"only {len(x)} usable points"
            evidence[role] = {"key": key, "available": False, "note": why, "turns": [],
                              "change_points": []}
            continue
        ev = _analyse(x, y, kind, params)
        evidence[role], series[role] = {"key": key, **ev}, (x, y)
        spans.append(float(x[-1] - x[0]))
        step_per_point = (x[-1] - x[0]) / max(len(x) - 1, 1)
        widths.append(ev["smooth_window"] * step_per_point)

    tol = tolerance
    if tol is None:
        tol = int(round(max(0.10 * max(spans), 2 * max(widths)))) if spans else 0
    fmt, ln = evidence["format"], evidence["length"]
    acq = _acquisition(*series["format"], fmt["smooth_window"]) if "format" in series else None

    # A destabilisation is a fall of the format reward after it held near its top: the turn's top
    # in the upper half of the series' range (a dip on the way up is not one).
    f_turns = []
    if fmt["available"]:
        sm = fmt["smoothed"]
        for t in fmt["turns"]:  # and the level after it stays lower, beyond noise
            t["sustained"] = _windows(*series["format"], (t["bracket"][0], t["step"]),
                                      (t["step"], t["after_until_step"]))
        f_turns = [t for t in fmt["turns"] if t["fit_value"] >= sm["min"] + 0.5 * (sm["max"] - sm["min"])
                   and (acq is None or t["step"] > acq["step"])
                   and t["sustained"]["diff"] < 0 and t["sustained"]["p"] <= P_MAX]
    l_turns = [t["step"] for t in ln["turns"]]

    step = f_step = l_step = conf = turn = None
    if fmt["available"]:
        combination = "format" if ln["available"] else f"format only (length: {ln['note']})"
        l_step = l_turns[0] if l_turns else None  # the length's own turn, unless one pairs with a fall
        # The first fall that counts is the destabilisation (a run can fall again later, further):
        # one the length's trough pairs with, or a large one, or one the cut share explains.
        for t in f_turns:
            paired = sorted((abs(t["step"] - l), l) for l in l_turns if abs(t["step"] - l) <= tol)
            if paired:
                l_step = paired[0][1]
                step, f_step, turn, conf, combination = min(t["step"], l_step), t["step"], t, "high", "both"
                reason = (f"format reward falls from step {f_step} and completion length bottoms out "
                          f"at step {l_step} (within {tol} steps): transition at the earlier, {step}")
                break
            sig = _signals(df, tuple(t["bracket"][:1]) + (t["step"],), (t["step"], t["after_until_step"]))
            why = _why(sig)
            c = _confidence(t["effect_in_noise_sd"])  # the rank test above kept lone spikes out
            if why and c is None and t["effect_in_noise_sd"] >= min_effect:
                c = "medium"
            if c == "high" or (c == "medium" and (why or not require_both)):
                step = f_step = t["step"]
                turn, conf = t, ("high" if why else c)
                reason = (f"transition at step {step}: the format reward falls by {t['effect']:.3g} "
                          f"({t['effect_in_noise_sd']:.1f} noise SD)" + (f"; {why}" if why else ""))
                break
        else:  # no turn counts: a gentle, lasting fall the penalised fit merges into the hold?
            sag = _sag(*series["format"], fmt["smooth_window"], acq)
            if sag is not None:
                sig = _signals(df, (sag["from_step"], sag["step"]), (sag["step"], sag["low_step"]))
                why = _why(sig)
                if sag["confidence"] == "high" or why or not require_both:
                    step = f_step = sag["step"]
                    conf = "high" if why else sag["confidence"]
                    turn = {"bracket": [sag["from_step"]], "after_until_step": sag["low_step"]}
                    reason = f"transition at step {step}: " + sag["reason"] + (f"; {why}" if why else "")
                fmt["sag"] = sag
            if step is None:
                desc = f"format turns at {[t['step'] for t in f_turns] or 'no step'}, length turns at {l_turns or 'no step'}"
                reason = f"no transition: {desc}; none is a large fall after a hold, nor paired within {tol} steps"
                if fmt.get("sag"):
                    reason += f"; {fmt['sag']['reason']} ({fmt['sag']['confidence']}, not corroborated)"
    elif ln["available"]:
        combination = f"length only (format: {fmt['note']})"
        if l_turns:
            step = l_step = l_turns[0]
            conf = "medium"
            reason = f"{combination}: length turns at step {step}"
        else:
            reason = f"no transition: {combination}, and it shows no turn"
    else:
        combination = "none (neither metric available)"
        reason = f"no transition: neither {format_key!r} nor {length_key!r} is usable"
    evidence["combination"] = combination
    signals = (_signals(df, (turn["bracket"][0], step), (step, turn["after_until_step"]))
               if turn is not None else {})
    if combination == "both" and (why := _why(signals)):  # the other paths chose with it and said it
        reason += f"; {why}"
    n_steps = int(df["step"].max()) if len(df) else None
    return {
        "step": None if step is None else int(step),
        "reason": reason,
        "confidence": conf,
        "acquisition_step": acq["step"] if acq else None,
        "acquisition_reason": acq["reason"] if acq else "no rise of the format reward stands out of its noise",
        "acquisition_confidence": acq["confidence"] if acq else None,
        "acquisition": acq,
        "format_step": f_step,
        "length_step": l_step,
        "signals": signals,
        "tolerance": int(tol),
        "last_step": n_steps,
        "params": params,
        "evidence": evidence,
    }


def no_signal_streak(df: pd.DataFrame, key: str = ZERO_STD_KEY) -> tuple[int, int] | None:
    """(first step, logged steps) of the longest run of steps where every group's rewards were
    equal (``frac_reward_zero_std`` = 1): GRPO's advantages are all zero there, so the policy does
    not move and cannot leave that state by itself. None when the key is absent or never 1."""
    if key not in df.columns:
        return None
    flat = (pd.to_numeric(df[key], errors="coerce") >= 1.0).to_numpy()
    best, start = None, None
    for i, f in enumerate(np.append(flat, False)):
        if f and start is None:
            start = i
        elif not f and start is not None:
            if best is None or i - start > best[1]:
                best = (int(df["step"].iloc[start]), i - start)
            start = None
    return best


def best_checkpoint(step: int | None, saved_steps: Iterable[int]) -> int | None:
    """The latest saved step at or before ``step`` (None when step is None or nothing qualifies)."""
    if step is None:
        return None
    ok = [int(s) for s in saved_steps if int(s) <= step]
    return max(ok) if ok else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tina.phase",
        description="Detect the format reward's acquisition and destabilisation (the phase transition) of a run.")
    ap.add_argument("metrics", help="a run's metrics.jsonl, or the run directory")
    ap.add_argument("--format-key", default=FORMAT_KEY)
    ap.add_argument("--length-key", default=LENGTH_KEY)
    ap.add_argument("--tolerance", type=int, default=None, help="steps between the two turns")
    ap.add_argument("--pen-scale", type=float, default=DEFAULTS["pen_scale"])
    ap.add_argument("--smooth", type=int, default=None, help="bin width in logged points")
    ap.add_argument("--single", action="store_true",
                    help="accept a medium fall of the format reward that neither the length nor the cut share corroborates")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    a = ap.parse_args(argv)
    mp = metrics_path(a.metrics)
    if not mp.is_file():
        print(f"error: no metrics file at {mp}", file=sys.stderr)
        return 2
    res = detect(mp, format_key=a.format_key, length_key=a.length_key, tolerance=a.tolerance,
                 pen_scale=a.pen_scale, smooth=a.smooth, require_both=not a.single)
    saved = saved_steps(mp.parent)
    if saved:
        res["saved_steps"] = saved
        res["best_checkpoint"] = best_checkpoint(res["step"], saved)
    if not a.json:
        line = (f"transition at step {res['step']} ({res['confidence']})" if res["step"] is not None
                else "no transition") + f" -- {res['reason']}"
        if saved:
            line += f"; best checkpoint: {res['best_checkpoint']}"
        print(line)
        print(f"format acquired at step {res['acquisition_step']} ({res['acquisition_confidence']}) -- "
              f"{res['acquisition_reason']}" if res["acquisition_step"] is not None
              else f"no format acquisition -- {res['acquisition_reason']}")
    print(json.dumps(res, indent=None if a.json else 2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `... | head`
        sys.stdout = open(os.devnull, "w")
        sys.exit(0)
