"""Detect the format-reward / completion-length phase transition of a LoRA-GRPO run.

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
5. Combining the two metrics. A transition requires a peak turn of the format reward AND a trough
   turn of the completion length within ``tolerance`` steps of each other (default: max(10% of the
   logged step span, 2 bins)). Among such pairs the earliest is taken, and the transition step is
   the EARLIER of the two turns: the best checkpoint is at or just before the turning point, so
   the step where the first of the two metrics starts to turn is the one to stay at or before.
   Requiring both keeps a lone noisy dip of one metric from being called a transition; a turn of
   only one metric gives ``step = None`` with the lone turn in the evidence (``require_both=False``
   accepts it instead). When one metric is absent from the run (key missing, all NaN or too few
   points), the other is used alone and ``evidence["combination"]`` says so; with neither, step
   is None.

Measured accuracy (tests/test_phase.py, 50 synthetic runs of 300-2000 steps with realistic noise):
86% of transitions within +-2% of the run length, 96% within +-5%, 1 missed (a noisy short run);
no false transition on flat, rising-then-plateau or LIMR-like curves. The figures are stated and
checked there.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Iterable

import numpy as np
import pandas as pd
import ruptures as rpt
from ruptures.base import BaseCost

from tina.metrics import metrics_path, read_metrics
from tina.run_dir import saved_steps  # the run directory's layout has one owner

__all__ = ["detect", "best_checkpoint", "saved_steps", "main", "FORMAT_KEY", "LENGTH_KEY"]

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
    "require_both": True,
    "refine": True,      # move each turn to the best continuous hinge on the raw points
}
MIN_POINTS = 8  # fewer usable points than this: the metric counts as unavailable


class _PiecewiseLinearCost(BaseCost):
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
    cost = _PiecewiseLinearCost()  # Pelt.fit fits it; its stats() then describe the segments
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
    """Find the phase-transition step of a run (module docstring: the rule and why).

    ``df_or_path``: a metrics DataFrame (``step`` + metric columns), a metrics.jsonl path or a run
    directory. A path that does not exist raises FileNotFoundError.

    Returns a JSON-serialisable dict: ``step`` (int or None), ``reason`` (one line), ``format_step``
    / ``length_step`` (each metric's chosen turn or None), ``tolerance`` (steps), ``params``, and
    ``evidence`` = {"format": {...}, "length": {...}, "combination": str} where each metric's entry
    holds ``key``, ``available``, ``noise_sigma``, ``smooth_window``, ``change_points`` (steps),
    ``segments`` (fit per piece with trend and t), ``turns`` (each with the peak/trough of the
    smoothed series it brackets and its effect size) and ``smoothed`` (min/max/first/last/mean).
    """
    if isinstance(df_or_path, pd.DataFrame):
        df = df_or_path
        if "step" in df.columns and not df["step"].is_monotonic_increasing:
            df = df.sort_values("step", kind="stable")
    else:
        mp = metrics_path(df_or_path)
        if not mp.is_file():
            raise FileNotFoundError(f"no metrics file at {mp}")
        df = read_metrics(mp)
    params = {"max_points": max_points, "smooth": smooth, "min_segment": min_segment,
              "pen_scale": pen_scale, "t_min": t_min, "min_effect": min_effect,
              "tolerance": tolerance, "require_both": require_both, "refine": refine}

    evidence = {}
    spans, widths = [], []
    for role, key, kind in (("format", format_key, "peak"), ("length", length_key, "trough")):
        x, y = _series(df, key)
        if x is None or len(x) < MIN_POINTS:
            why = "key missing" if x is None else f"only {len(x)} usable points"
            evidence[role] = {"key": key, "available": False, "note": why, "turns": [],
                              "change_points": []}
            continue
        ev = _analyse(x, y, kind, params)
        evidence[role] = {"key": key, **ev}
        spans.append(float(x[-1] - x[0]))
        step_per_point = (x[-1] - x[0]) / max(len(x) - 1, 1)
        widths.append(ev["smooth_window"] * step_per_point)

    tol = tolerance
    if tol is None:
        tol = int(round(max(0.10 * max(spans), 2 * max(widths)))) if spans else 0
    fmt, ln = evidence["format"], evidence["length"]
    f_turns = [t["step"] for t in fmt["turns"]]
    l_turns = [t["step"] for t in ln["turns"]]

    step = f_step = l_step = None
    if fmt["available"] and ln["available"]:
        pairs = sorted((min(f, l), abs(f - l), f, l) for f in f_turns for l in l_turns
                       if abs(f - l) <= tol)
        if pairs:
            step, _, f_step, l_step = pairs[0]
            combination = "both"
            reason = (f"format reward peaks at step {f_step} and completion length bottoms out "
                      f"at step {l_step} (within {tol} steps): transition at the earlier, {step}")
        else:
            f_step = f_turns[0] if f_turns else None
            l_step = l_turns[0] if l_turns else None
            desc = (f"format turns at {f_turns or 'no step'}, length turns at {l_turns or 'no step'}")
            if not require_both and (f_turns or l_turns):
                step = min(s for s in (f_step, l_step) if s is not None)
                combination = "single (require_both=False)"
                reason = f"{desc}; no pair within {tol} steps, taking the earliest single turn {step}"
            else:
                combination = "none"
                reason = f"no transition: {desc}; a transition needs both within {tol} steps"
    elif fmt["available"] or ln["available"]:
        role, other = ("format", "length") if fmt["available"] else ("length", "format")
        turns = f_turns if role == "format" else l_turns
        combination = f"{role} only ({other}: {evidence[other]['note']})"
        if turns:
            step = turns[0]
            f_step, l_step = (step, None) if role == "format" else (None, step)
            reason = f"{combination}: {role} turns at step {step}"
        else:
            reason = f"no transition: {combination}, and it shows no turn"
    else:
        combination = "none (neither metric available)"
        reason = f"no transition: neither {format_key!r} nor {length_key!r} is usable"
    evidence["combination"] = combination
    n_steps = int(df["step"].max()) if len(df) else None
    return {
        "step": None if step is None else int(step),
        "reason": reason,
        "format_step": f_step,
        "length_step": l_step,
        "tolerance": int(tol),
        "last_step": n_steps,
        "params": params,
        "evidence": evidence,
    }


def best_checkpoint(step: int | None, saved_steps: Iterable[int]) -> int | None:
    """The latest saved step at or before ``step`` (None when step is None or nothing qualifies)."""
    if step is None:
        return None
    ok = [int(s) for s in saved_steps if int(s) <= step]
    return max(ok) if ok else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tina.phase",
        description="Detect the format-reward / completion-length phase transition of a run.")
    ap.add_argument("metrics", help="a run's metrics.jsonl, or the run directory")
    ap.add_argument("--format-key", default=FORMAT_KEY)
    ap.add_argument("--length-key", default=LENGTH_KEY)
    ap.add_argument("--tolerance", type=int, default=None, help="steps between the two turns")
    ap.add_argument("--pen-scale", type=float, default=DEFAULTS["pen_scale"])
    ap.add_argument("--smooth", type=int, default=None, help="bin width in logged points")
    ap.add_argument("--single", action="store_true", help="accept a turn of one metric alone")
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
        line = (f"transition at step {res['step']}" if res["step"] is not None
                else "no transition") + f" -- {res['reason']}"
        if saved:
            line += f"; best checkpoint: {res['best_checkpoint']}"
        print(line)
    print(json.dumps(res, indent=None if a.json else 2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # `... | head`
        sys.stdout = open(os.devnull, "w")
        sys.exit(0)
