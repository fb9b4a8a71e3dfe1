"""The report's figures: training curves and cost against accuracy, drawn so they can go into a
paper draft as they are: axes within the metric's range, legends outside the data, smoothing
for the eye only (raw values stay, faint; detection always uses the raw values)."""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd

from analysis.cells import isnan

# Readable where a figure is shown narrowest, an 800 px window (~770 px of page): figures at most
# MAX_WIDTH_IN wide at DPI, text at least FONT points (tests/test_report_browser.py checks on screen).
DPI, MAX_WIDTH_IN, FONT = 90, 10.0, 10
STYLE = {"font.size": FONT + 1, "axes.titlesize": FONT + 2, "legend.fontsize": FONT,
         "xtick.labelsize": FONT, "ytick.labelsize": FONT, "figure.titlesize": FONT + 3}

CURVES = [("format", "format reward"), ("length", "completion length (tokens)"),
          ("accuracy", "accuracy reward"), ("kl", "KL to the base model")]
FRACTIONS = ("format", "accuracy")  # rewards that are means of 0/1 scores: their axis is [0, 1]


def subplots(*args, **kwargs):
    """plt.subplots in the report's STYLE (text is sized when it is made, so set before)."""
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt.subplots(*args, **kwargs)


def png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)  # constrained layout: no second "tight" draw
    plt.close(fig)
    return buf.getvalue()


def within(ax, values, lo: float, hi: float, pad: float = 0.08) -> None:
    """y-limits around ``values`` with a margin, never outside the metric's range [lo, hi]."""
    v = np.asarray([x for x in values if not isnan(x)], dtype=float)
    if not len(v):
        ax.set_ylim(lo, hi)
        return
    span = max(v.max() - v.min(), 0.1 * (hi - lo))
    ax.set_ylim(max(lo, v.min() - pad * span), min(hi, v.max() + pad * span))


def smooth(y: np.ndarray) -> tuple[np.ndarray, int]:
    """(rolling median, its window): ~1/25 of the run, at least 3 steps, at most 1/5 of them. A
    median, not a mean: a KL spike of one step would otherwise lift the trend for a whole window."""
    w = max(1, min(len(y) // 5, max(3, len(y) // 25)))
    return pd.Series(y).rolling(w, center=True, min_periods=1).median().to_numpy(), w


def curve_figure(runs: pd.DataFrame, curves: pd.DataFrame, labels: list[str],
                 title: str) -> tuple[bytes, str]:
    """(PNG, caption): a 2x2 grid of CURVES, one colour per run, its transition dashed."""
    import matplotlib.pyplot as plt

    rows = math.ceil(len(runs) / 3)
    fig, ax = subplots(2, 2, figsize=(MAX_WIDTH_IN, 6.6 + 0.3 * rows), sharex=True, layout="constrained")
    cmap = plt.get_cmap("tab10")
    drawn, windows, kl_top = 0, set(), []
    for i, (label, (_, r)) in enumerate(zip(labels, runs.iterrows())):
        c = curves[curves["run"] == r["run"]]
        color, t = cmap(i % 10), r.get("transition_step")
        label += f"  (transition {int(t)})" if not isnan(t) else ""
        for k, (key, _) in enumerate(CURVES):
            a = ax.flat[k]
            s = c[c["metric"] == key].sort_values("step")
            if len(s):
                x, y = s["step"].to_numpy(), s["value"].to_numpy(dtype=float)
                ys, w = smooth(y)
                if w > 1:
                    windows.add(w)
                    thin = slice(None, None, max(1, len(y) // 400))  # the noise's look, not its bytes
                    a.plot(x[thin], y[thin], color=color, alpha=0.2, lw=0.7)
                a.plot(x, ys, color=color, lw=1.6, label=label if k == 0 else None)
                if key == "kl":
                    kl_top.append(float(np.nanmax(ys)))
            if not isnan(t):
                a.axvline(float(t), color=color, ls="--", lw=1.1, alpha=0.9)
        drawn += not isnan(t)
    for k, (key, name) in enumerate(CURVES):
        a = ax.flat[k]
        a.set_title(name)
        a.grid(alpha=0.3)
        if key in FRACTIONS:
            a.set_ylim(0, 1)
        elif key == "kl" and kl_top and max(kl_top) > 0:
            a.set_ylim(0, 1.25 * max(kl_top))  # the smoothed curve sets the scale; spikes clip
    for a in ax[1]:
        a.set_xlabel("step")
    fig.suptitle(title)
    fig.legend(loc="outside lower center", ncol=min(2, max(1, len(runs))), frameon=False)
    caption = [f"Dashed: detected transition ({drawn} of {len(runs)} runs)." if drawn else
               "No transition detected in these runs (the table 'Transition detection' says why)."]
    if windows:
        caption.append(f"Bold: rolling median over {'/'.join(str(w) for w in sorted(windows))} "
                       f"logged steps; faint: raw values (the KL axis fits the smoothed curve, "
                       f"so raw spikes may be cut off).")
    return png(fig), " ".join(caption)


def pareto(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Indices of the points no other point dominates (strictly: at most the cost and at least the
    accuracy, better in one). Of two runs with the same cost only the more accurate is on the
    frontier, of two with the same accuracy only the cheaper; of identical points, the first.
    Sorted by cost."""
    cost, acc = np.asarray(cost, dtype=float), np.asarray(acc, dtype=float)
    keep = []
    # by cost, the most accurate first among equal costs, the earliest first among identical points
    for i in np.lexsort((np.arange(len(cost)), -acc, cost)):
        if not keep or acc[i] > acc[keep[-1]]:
            keep.append(i)
    return np.array(keep, dtype=int)


def _annotate(ax, at: dict) -> None:
    """Label each point; a label that would sit on an earlier one (within ~1 line of text) moves a
    line down, so two close runs (Open-RS3 and Open-RS3-DrGRPO) read as two names."""
    ax.figure.canvas.draw()  # the limits are final: positions in pixels are meaningful
    placed: list = []
    for xy, names in sorted(at.items(), key=lambda kv: (-kv[0][1], kv[0][0])):
        text = " / ".join(names)
        px, py = ax.transData.transform(xy)
        per_pt = ax.figure.dpi / 72  # offsets in points, positions in pixels
        x0, x1, dy = px, px + (4 + 0.62 * FONT * len(text)) * per_pt, 4.0  # ~0.6 em a character
        while any(x0 < q1 and q0 < x1 and abs(py + dy * per_pt - qy) < 1.3 * FONT * per_pt for q0, q1, qy in placed):
            dy -= 1.3 * FONT
        placed.append((x0, x1, py + dy * per_pt))
        ax.annotate(text, xy, fontsize=FONT, xytext=(4, dy), textcoords="offset points")


def scatter(ax, cost, acc, labels, xlabel, ylabel, title, color, acc_range=(0.0, 100.0), yerr=None, front=None):
    """Cost against accuracy with the frontier (`front`, else the strict one); `yerr` (2 x N, below and
    above) draws each point's interval. Returns the frontier's indices."""
    front = pareto(cost, acc) if front is None else front
    if yerr is not None:
        ax.errorbar(cost, acc, yerr=yerr, fmt="none", ecolor=color, alpha=0.45, lw=1, capsize=2, label="95% interval")
    ax.scatter(cost, acc, s=22, color=color, alpha=0.55, label="run", clip_on=False)
    fc, fa = cost[front], acc[front]
    ax.step(fc, fa, where="post", color="black", lw=1.2, label="Pareto frontier")
    ax.scatter(fc, fa, s=40, facecolors="none", edgecolors="black", clip_on=False)
    at: dict[tuple, list[str]] = {}  # runs at the same point share one label, not two on top
    for i in (range(len(cost)) if len(cost) <= 12 else front[:15]):
        at.setdefault((cost[i], acc[i]), []).append(labels[i])
    from matplotlib.ticker import EngFormatter, FuncFormatter, NullFormatter

    pos = cost[cost > 0]
    log = len(pos) and pos.max() / pos.min() > 20
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^1 3x10^1 ... overlap
    else:  # from zero: a 2% difference in cost looks like one, and no '1e11' offset hides the values
        ax.set_xlim(0, 1.15 * float(np.nanmax(cost)) if len(cost) and np.nanmax(cost) > 0 else 1)
        ax.xaxis.set_major_formatter(EngFormatter(sep=" ") if len(cost) and np.nanmax(cost) >= 1e4
                                     else FuncFormatter(lambda v, _: f"{v:g}"))
    within(ax, acc if yerr is None else np.concatenate([acc - yerr[0], acc + yerr[1]]), *acc_range, pad=0.2)
    _annotate(ax, at)
    if log:
        ax.margins(x=0.12)  # room for the labels of the extreme points
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    return front
