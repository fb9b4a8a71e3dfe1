"""The paper's early-stopping experiment as a report section: does the best checkpoint sit at or
before the phase transition (the paper: the format reward peaks and the completion length bottoms
out there, and accuracy falls after it)?

For each run evaluated at more than one checkpoint (``python -m tina.evaluate run_dir=RUN
eval.checkpoints=all``): benchmark accuracy by checkpoint step (mean, and the spread over
sampling seeds as a band) beside the training format reward and completion length, the detected
transition marked; a table of the best checkpoint, its distance from the transition (steps and %
of an epoch) and the accuracy the final checkpoint loses; and, over runs, how often the best
checkpoint sits at or before the transition. A run without a transition says why (the detector's
reason), since "no transition" is a finding on short or smooth runs, not a failure.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis.cells import DASH, clip, isnan, num
from analysis.document import Heading, Image, Para, Table
from analysis.plots import MAX_WIDTH_IN, png, smooth, subplots, within

MAX_PANELS = 12  # one figure per run: beyond this a report is a scroll, not a comparison
HOW = "python -m tina.evaluate run_dir=RUN eval.checkpoints=all"


def checkpoint_scores(ev: pd.DataFrame) -> pd.DataFrame:
    """Per trained checkpoint (not the base model): step, mean pass@1 over benchmarks, benchmarks
    evaluated; only the checkpoints evaluated on the most benchmarks compare fairly."""
    ev = ev[(ev["checkpoint"] != "base") & ev["step"].notna()]
    by = ev.groupby("step")
    s = pd.DataFrame({"acc": by["pass@1"].mean(), "n": by["benchmark"].nunique()}).reset_index()
    return s[s["n"] == s["n"].max()].sort_values("step") if len(s) else s


def _row(r, label: str, scores: pd.DataFrame) -> dict:
    best = scores.loc[scores["acc"].idxmax()]  # idxmax: the earliest of equal maxima
    final = scores.iloc[-1]
    t = r.get("transition_step")
    per_epoch = r["steps"] / r["epochs"] if not isnan(r.get("epochs")) and r.get("epochs") else None
    saved = r.get("saved_steps")
    saved = len(saved) if isinstance(saved, list) and saved else None
    out = {"run": label, "evaluated": f"{len(scores)}/{saved}" if saved else str(len(scores)),
           "best ckpt": int(best["step"]),
           "best %": f"{100 * best['acc']:.1f}", "transition": DASH if isnan(t) else int(t)}
    if isnan(t):
        out.update({"best − transition": DASH, "(% epoch)": DASH, "at or before": DASH})
    else:
        d = int(best["step"]) - int(t)
        out.update({"best − transition": f"{d:+d}",
                    "(% epoch)": DASH if per_epoch is None else f"{100 * d / per_epoch:+.0f}",
                    "at or before": "yes" if d <= 0 else "no"})
    out.update({"final ckpt": int(final["step"]), "final %": f"{100 * final['acc']:.1f}",
                "lost by final (pts)": f"{100 * (best['acc'] - final['acc']):.1f}"})
    return out


def _figure(r, label: str, ev: pd.DataFrame, scores: pd.DataFrame, curves: pd.DataFrame):
    """(PNG, caption) of one run: accuracy by checkpoint | format reward | completion length."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, ax = subplots(1, 3, figsize=(MAX_WIDTH_IN, 3.9), layout="constrained")
    base = ev[ev["checkpoint"] == "base"]  # the model before training, drawn at step 0
    ev = ev[ev["step"].isin(scores["step"])]
    for k, (bench, b) in enumerate(ev.groupby("benchmark")):
        b = b.sort_values("step")
        x, y = b["step"].to_numpy(float), 100 * b["pass@1"].to_numpy(float)
        sd = 100 * pd.to_numeric(b["pass@1_seed_std"], errors="coerce").fillna(0).to_numpy(float)
        color = plt.get_cmap("tab10")(k % 10)
        ax[0].plot(x, y, "o-", color=color, lw=1.6, ms=4, label=bench, clip_on=False)
        ax[0].fill_between(x, y - sd, y + sd, color=color, alpha=0.2, lw=0)
        b0 = base[base["benchmark"] == bench]
        if len(b0):
            ax[0].plot([0, x[0]], [100 * b0["pass@1"].iloc[0], y[0]], ":", color=color, lw=1.2)
            ax[0].plot([0], [100 * b0["pass@1"].iloc[0]], "s", color=color, ms=6, clip_on=False,
                       label="base model (step 0)" if k == 0 else None)
    if ev["benchmark"].nunique() > 1:  # the best checkpoint is chosen on this mean
        ax[0].plot(scores["step"], 100 * scores["acc"], ":", color="black", lw=1.2,
                   label="mean over benchmarks")
    best = scores.loc[scores["acc"].idxmax()]
    ax[0].plot([best["step"]], [100 * best["acc"]], "*", color="black", ms=13, zorder=5,
               label="best checkpoint (highest mean)", clip_on=False)
    within(ax[0], [*(100 * base["pass@1"]), *(100 * ev["pass@1"]), *(100 * ev["pass@1"] + 100 * ev["pass@1_seed_std"].fillna(0)),
                   *(100 * ev["pass@1"] - 100 * ev["pass@1_seed_std"].fillna(0))], 0, 100, pad=0.25)
    ax[0].set_title("pass@1 (%) by checkpoint")
    ax[0].legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=1, frameon=False)
    for a, key, title in ((ax[1], "format", "training format reward"),
                          (ax[2], "length", "completion length (tokens)")):
        s = curves[(curves["run"] == r["run"]) & (curves["metric"] == key)].sort_values("step")
        if len(s):
            y = s["value"].to_numpy(float)
            ys, w = smooth(y)
            if w > 1:
                a.plot(s["step"], y, color="tab:gray", alpha=0.35, lw=0.8)
            a.plot(s["step"], ys, color="tab:blue", lw=1.6)
        if key == "format":
            a.set_ylim(0, 1)
        a.set_title(title)
    t = r.get("transition_step")
    for a in ax:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
        a.grid(alpha=0.3)
        a.set_xlabel("step")
        if not isnan(t):
            a.axvline(float(t), color="tab:red", ls="--", lw=1.2)
        for s in scores["step"]:  # where the evaluated checkpoints are, on the training curves too
            a.axvline(float(s), color="black", lw=0.5, alpha=0.15)
    fig.suptitle(label)
    caption = (f"{label}: bands are ± 1 SD of pass@1 over sampling seeds; thin grey lines mark the "
               f"evaluated checkpoints; "
               + ("squares at step 0: the base model before training; " if len(base) else
                  "the base model was not evaluated (eval.include_base=true adds it); ")
               + (f"red dashed: detected transition at step {int(t)}." if not isnan(t) else
                  f"no transition detected: "
                  f"{(r.get('transition_reason') or 'no metrics').removeprefix('no transition: ')}."))
    return png(fig), caption


def section(df: pd.DataFrame, labels: dict, evals: pd.DataFrame, curves: pd.DataFrame) -> list:
    """The section, for the runs in ``df`` (``labels``: run path -> how the report names it)."""
    blocks = [Heading(2, "Best checkpoint and the phase transition (the paper's early stopping)")]
    eligible, missing = [], []
    for _, r in df.iterrows():
        ev = evals[evals["run"] == r["run"]] if len(evals) else evals
        scores = checkpoint_scores(ev) if len(ev) else pd.DataFrame()
        if len(scores) >= 2:
            eligible.append((r, ev, scores))
        else:
            missing.append(f"{labels[r['run']]} ({'never evaluated' if not len(ev) else 'evaluated at one checkpoint'})")
    if not eligible:
        return blocks + [Para(f"No run was evaluated at more than one checkpoint, so there is nothing "
                              f"to compare with the transition yet: `{HOW}`.")]
    rows = [_row(r, labels[r["run"]], scores) for r, _, scores in eligible]
    with_t = [x for x in rows if x["transition"] != DASH]
    before = sum(x["at or before"] == "yes" for x in with_t)
    no_t = [(labels[r["run"]], r.get("transition_reason")) for r, _, _ in eligible
            if isnan(r.get("transition_step"))]
    summary = f"{len(eligible)} run{'s' * (len(eligible) != 1)} evaluated at two or more checkpoints. "
    if with_t:
        summary += (f"The best checkpoint sits at or before the detected transition in {before} of "
                    f"{len(with_t)} runs with a transition (the paper's claim). ")
    if no_t:
        summary += (f"No transition was detected in {len(no_t)} run{'s' * (len(no_t) != 1)}, so "
                    f"the claim cannot be checked there: "
                    + "; ".join(f"{n}: {clip(why or 'no metrics', 160)}" for n, why in no_t) + ".")
    lost = [float(x["lost by final (pts)"]) for x in rows]
    summary += f" Accuracy lost by the final checkpoint: {num(float(np.mean(lost)))} points on average."
    blocks += [Para(summary),
               Table(pd.DataFrame(rows), caption="Evaluated: checkpoints evaluated / saved. Best "
                     "checkpoint: highest pass@1 averaged over the benchmarks evaluated (earliest of "
                     "ties). best − transition < 0: before it. "
                     "% epoch: that distance as a share of one epoch. Accuracies in %.")]
    for i, (r, ev, scores) in enumerate(eligible[:MAX_PANELS]):
        data, caption = _figure(r, labels[r["run"]], ev, scores, curves)
        blocks.append(Image(f"early_stop_{i + 1}.png", data, f"checkpoints of {labels[r['run']]}",
                            caption))
    if len(eligible) > MAX_PANELS:
        blocks.append(Para(f"Figures shown for the first {MAX_PANELS} of {len(eligible)} runs."))
    if missing:
        blocks.append(Para(f"Not in this section ({len(missing)}): " + ", ".join(missing[:20])
                           + (" ..." if len(missing) > 20 else "") + f". To add a run: `{HOW}`."))
    return blocks
