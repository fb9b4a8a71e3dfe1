"""``python -m analysis.report SWEEP_OR_RUN [...] [--out DIR] [--paper] [--prices FILE]``

Writes ``report.md`` (plots as PNG files in ``report_files/`` next to it) and a self-contained
``report.html`` (the same plots embedded as base64 PNG; no external file, script or font) into
``--out`` (default: the first directory given), then prints the paths written.

What is in it, and why
----------------------
* Per sweep, the runs laid out like the paper's Table 4, in two tables that fit a 1,400 px page
  (training; evaluation and cost): the columns that vary within the sweep (its ablation axes)
  come first and sort the rows; values the same in every run are stated once above.
* Runs that failed, went stale or logged nothing are listed with their error.
* Training curves, at most 10 runs per figure, with each run's detected transition.
* Cost against accuracy with the (strict) Pareto frontier, on ONE accuracy measure for all runs,
  the best any run has: evaluation pass@1, else held-out accuracy after training, else the last
  training accuracy reward. It is named under the figure, and so is every run left out and why.
* A sweep run as a study (``+study=NAME``, study/NAME.yaml) gets a section ending in one sentence:
  the paper's claim, this reproduction's answer and whether they agree (``analysis.studies``).
* The paper's early-stopping experiment (``analysis.early_stop``) for runs evaluated at several
  checkpoints; ``--paper``: the paper's Tables 2-4 beside the reproduction (``analysis.paper``).
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import early_stop, studies, verdict_report
from analysis import paper as paper_tables
from analysis import trainer_drift
from analysis.cells import DASH, clip, duration, isnan, num, pct, sort_key
from analysis.document import BAD_STATUS, Heading, Image, Para, Table, render_html, render_md
from analysis.plots import CURVES, MAX_WIDTH_IN, curve_figure, png, scatter, subplots
from analysis.search_report import MIN_TRIALS_FOR_IMPORTANCE, search_section
from analysis.runs import CONFIG_COLUMNS, collect, collect_curves, collect_evals, override_columns

__all__ = ["build", "main"]

PER_FIGURE = 10       # runs per curve figure: more lines stop being readable
MAX_CURVE_RUNS = 60   # curves are read from disk: bound the report's time on 1,000-run sweeps
_NEEDED = ("name", "sweep", "status", "steps", "max_steps", "logged_steps", "transition_step",
           "transition_reason", "transition_confidence", "acquisition_step", "best_checkpoint", "error", "notes", "usd", "gpu_hours", "epochs")
# (column, how the report names it): the accuracy measures, best first
MEASURES = (("eval_avg", "evaluation pass@1 (%), mean over the benchmarks evaluated, at each run's "
                         "best evaluated checkpoint"),
            ("heldout_final_accuracy", "held-out accuracy after training (%), as training logs it"),
            ("accuracy_final", "accuracy reward at the last training step (%)"))


# ----------------------------------------------------------------------------- grouping
def _axes(g: pd.DataFrame, candidates) -> list[str]:
    def varies(c):
        # an override absent from some runs is an axis (default vs set); a config value that is
        # missing (no config.yaml) is unknown, not different
        vals = {repr(v) if not isnan(v) else "nan" for v in g[c]
                if c not in CONFIG_COLUMNS or not isnan(v)}
        return len(vals) > 1
    return [c for c in candidates if c in g.columns and varies(c)]


def groups(df: pd.DataFrame):
    """[(sweep, rows sorted by axes, axes, fixed {col: value})], one per sweep directory."""
    ov = override_columns(df)
    cand = ov + [c for c in CONFIG_COLUMNS if c not in ov]  # an override of a config key: once
    out = []
    for sweep, g in df.groupby("sweep", sort=False):
        axes = _axes(g, cand)
        g = g.assign(_k=[tuple(sort_key(r[a]) for a in axes) + (sort_key(r["name"]),)
                         for _, r in g.iterrows()]).sort_values("_k").drop(columns="_k")
        fixed = {c: g[c].iloc[0] for c in cand if c in g and c not in axes and not isnan(g[c].iloc[0])}
        out.append((sweep, g, axes, fixed))
    return out


def _short_name(name, has_axes: bool) -> str:
    """Hydra names a sweep's job folders N_<overrides>; with the axes in columns, #N is enough."""
    m = re.match(r"^(\d+)_", str(name))
    if has_axes and m:
        return "#" + m.group(1)
    name = str(name)
    return name if len(name) <= 40 else name[:18] + "…" + name[-18:]


def _label(r, axes) -> str:
    if axes:
        return ", ".join(f"{a}={num(r[a])}" for a in axes)
    return clip(r["name"], 40)


# ----------------------------------------------------------------------------- tables
def run_tables(g: pd.DataFrame, axes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training, evaluation and cost): one row per run each, split so each fits 1,400 px."""
    benches = [c for c in g.columns if c.startswith("eval/") and g[c].notna().any()]
    train, rest = [], []
    for _, r in g.iterrows():
        key = {"run": _short_name(r["name"], bool(axes)), **{a: num(r[a]) for a in axes}}
        b, f = r.get("heldout_base_accuracy"), r.get("heldout_final_accuracy")
        tries = r.get("attempts")
        train.append({**key, "status": r["status"], "steps": f"{num(r['steps'])}/{num(r['max_steps'])}",
                      "attempts": str(int(tries)) if not isnan(tries) and tries > 1 else DASH,  # requeues, reruns
                      "acquired": num(r.get("acquisition_step")),
                      "transition": num(r.get("transition_step")), "best ckpt": num(r.get("best_checkpoint")),
                      "format peak": num(r.get("format_peak")),
                      "acc. reward (final)": num(r.get("accuracy_final")),
                      "length min": num(r.get("length_min"), 4),
                      "held-out acc. % base→final": DASH if isnan(b) and isnan(f) else f"{pct(b)}→{pct(f)}"})
        issue = r.get("error") if not isnan(r.get("error")) else r.get("notes")
        rest.append({**key, **{c[5:] + " %": pct(r[c]) for c in benches},
                     "eval avg %": pct(r.get("eval_avg")), "eval ckpt": num(r.get("eval_checkpoint")),
                     "wall": duration(r.get("wall_seconds")), "GPU-h": num(r.get("gpu_hours")),
                     "USD": DASH if isnan(r.get("usd")) else f"{float(r['usd']):.2f}",
                     "FLOPs": num(r.get("flops")), "notes": clip(issue, 160)})
    keep = ["run", *axes, "status", "steps", "transition", "best ckpt"]

    def informative(rows):  # a column that says nothing for any run only costs width
        t = pd.DataFrame(rows)
        return t.drop(columns=[c for c in t.columns if c not in keep and t[c].isin([DASH, ""]).all()])
    return informative(train), informative(rest)


def _status_line(df: pd.DataFrame) -> str:
    return ", ".join(f"{n} {s}" for s, n in df["status"].value_counts().items())


# ----------------------------------------------------------------------------- cost vs accuracy
def accuracy_measure(df: pd.DataFrame):
    """(column, description): the best accuracy measure any run has (module docstring)."""
    for col, label in MEASURES:
        if col in df and df[col].notna().any():
            return col, label
    return None, None


def cost_measure(df: pd.DataFrame):
    for col, label, scale in (("usd", "USD", 1.0), ("gpu_hours", "GPU-hours", 1.0),
                              ("flops", "training FLOPs (estimate)", 1.0),
                              ("wall_seconds", "wall-clock hours", 1 / 3600)):
        if col in df and (pd.to_numeric(df[col], errors="coerce") > 0).any():
            return col, label, scale
    return None, None, 1.0


def _why_left_out(r, acol: str) -> str:
    if isnan(r.get(acol)):
        if not r.get("logged_steps"):
            return "logged no step"
        if acol == "eval_avg":
            return "never evaluated" + (" (has held-out accuracy only, a different measure)"
                                        if not isnan(r.get("heldout_final_accuracy")) else "")
        if acol == "heldout_final_accuracy":
            return "no held-out accuracy (training did not finish)"
        return "no accuracy reward logged"
    return "no cost (no summary.json saying on what hardware it ran)"


def cost_section(df, labels, shorts, with_paper: bool) -> list:
    blocks = [Heading(2, "Cost versus accuracy")]
    acol, alabel = accuracy_measure(df)
    ccol, clabel, scale = cost_measure(df)
    if acol is None or ccol is None:
        return blocks + [Para("No run has both an accuracy measure and a cost yet.")]
    d = df.assign(_label=labels, _short=shorts)
    ok = d[acol].notna() & pd.to_numeric(d[ccol], errors="coerce").notna()
    left_out = [f"{r['_label'] or r['_short']} ({_why_left_out(r, acol)})" for _, r in d[~ok].iterrows()]
    d = d[ok]
    cost = pd.to_numeric(d[ccol]).to_numpy(dtype=float) * scale
    acc = 100 * d[acol].to_numpy(dtype=float)
    # Side by side only in the paper's units (USD, the six-benchmark average); else the paper's panel
    # is a figure of its own, so no reader lines up two measures as if they were one.
    beside = with_paper and ccol == "usd" and acol == "eval_avg"
    n = 2 if beside else 1
    fig, ax = subplots(1, n, figsize=(MAX_WIDTH_IN / 2 * n, 4.6), squeeze=False, layout="constrained")
    marks = [lab if len(lab) <= 24 else short for lab, short in zip(d["_label"], d["_short"])]
    low, high = verdict_report.run_intervals(d, acol)
    bars = np.isfinite(low).any()
    yerr = np.vstack([acc - low, high - acc]) if bars else None
    front = scatter(ax[0, 0], cost, acc, marks, clabel, f"{alabel.split(' (')[0]} (%)", "this reproduction", "tab:blue", yerr=yerr,
                    front=verdict_report.pareto_ties(cost, acc, low, high) if bars else None)
    if with_paper:
        paper_ax = ax[0, 1] if beside else subplots(1, 1, figsize=(MAX_WIDTH_IN / 2, 4.6), layout="constrained")[1]
        p = paper_tables.paper_rows()
        p = p[p["train_usd"].notna()]
        scatter(paper_ax, p["train_usd"].to_numpy(float), p["avg"].to_numpy(float),
                list(p["name"].str.replace("Tina-", "")), "train USD (2x L40S at 1 USD/GPU-h)",
                "average pass@1 over 6 benchmarks (%)", "paper (Tina)", "tab:orange")
    caption = (f"Accuracy: {alabel}. Cost: {clabel}. Circled: the Pareto frontier (no other run "
               f"costs at most as much and is at least as accurate, better in one)." if not bars else
               f"Accuracy: {alabel}; bars: 95% intervals over the run's problems. Cost: {clabel}. Circled: the "
               f"Pareto frontier, on which accuracies within noise tie: a run is off it when another costs at "
               f"most as much and is more accurate beyond noise (two-sided 5%), or ties with it for less.")
    blocks.append(Image("cost_vs_accuracy.png", png(fig), "cost versus accuracy", caption))
    if with_paper and not beside:
        blocks.append(Image("cost_vs_accuracy_paper.png", png(paper_ax.figure), "the paper's cost versus accuracy",
                            f"The paper's own runs: training USD against the average pass@1 over its six benchmarks. "
                            f"Not drawn beside this reproduction's, whose measures differ ({clabel}; {alabel})."))
    blocks.append(Para(f"Drawn: {len(d)} of {len(df)} runs. "
                       + (f"Left out: {'; '.join(left_out[:20])}" + (" ..." if len(left_out) > 20 else "")
                          + "." if left_out else "No run left out.")))
    fr = d.iloc[front]
    blocks.append(Table(pd.DataFrame({"Pareto run": fr["_short"], "": fr["_label"],
                                      clabel: [num(v) for v in cost[front]],
                                      "accuracy %": [f"{v:.1f}" for v in acc[front]]})))
    return blocks


# ----------------------------------------------------------------------------- curves
def _curve_blocks(df, grouped, labels, max_runs) -> list:
    blocks, picked, left = [Heading(2, "Training curves")], [], max_runs
    for sweep, g, _, _ in grouped:
        g = g[g["logged_steps"] > 0].iloc[: max(left, 0)]
        left -= len(g)
        if len(g):
            picked.append((sweep, g))
    if not picked:
        return blocks + [Para("No run has logged metrics yet.")]
    curves = collect_curves(pd.concat([g for _, g in picked]), keys=[k for k, _ in CURVES])
    n = shown = 0
    for sweep, g in picked:
        for start in range(0, len(g), PER_FIGURE):
            chunk = g.iloc[start:start + PER_FIGURE]
            n += 1
            title = f"{Path(sweep).name}: runs {start + 1}-{start + len(chunk)} of {len(g)}"
            data, caption = curve_figure(chunk, curves, [labels[r] for r in chunk["run"]], title)
            blocks.append(Image(f"curves_{n}.png", data, title, caption))
            shown += len(chunk)
    silent = [labels[r] for r, k in zip(df["run"], df["logged_steps"]) if not k]
    with_data = int((df["logged_steps"] > 0).sum())
    missing = []
    if silent:
        missing.append(f"{len(silent)} run{'s' * (len(silent) != 1)} logged no step: "
                       + ", ".join(silent[:20]) + (" ..." if len(silent) > 20 else ""))
    if shown < with_data:
        missing.append(f"curves shown for {shown} of {with_data} runs with metrics (the first "
                       f"{max_runs} in table order; --max-curve-runs shows more)")
    if missing:
        blocks.append(Para("Not drawn: " + "; ".join(missing) + "."))
    return blocks


# ----------------------------------------------------------------------------- the report
def _title(df: pd.DataFrame, grouped) -> str:
    if len(df) == 1:
        return f"tina report: run {df['name'].iloc[0]}"
    if len(grouped) == 1:
        return f"tina report: sweep {grouped[0][0]}"
    return f"tina report: {len(grouped)} sweeps"


def build(paths, out=None, paper=False, prices=None, df=None, max_curve_runs=MAX_CURVE_RUNS,
          **collect_kw) -> dict:
    """Collect ``paths`` (or use ``df``), write the report into ``out``; return {kind: path}."""
    import matplotlib

    matplotlib.use("Agg")
    if df is None:
        df = collect(*paths, prices=prices, **collect_kw)
    df = df.copy()
    for col in _NEEDED:  # a frame from an old cache or a hand-made one may lack some
        if col not in df:
            df[col] = None
    out = Path(out) if out else _default_out(paths[0])
    files = out / "report_files"
    files.mkdir(parents=True, exist_ok=True)
    grouped = groups(df)
    labels, shorts = pd.Series("", index=df.index), pd.Series("", index=df.index)
    for _, g, axes, _ in grouped:
        for i, r in g.iterrows():
            labels[i], shorts[i] = _label(r, axes), _short_name(r["name"], bool(axes))
    by_run = {r: (lab if lab and len(lab) <= 40 else s) for r, lab, s in zip(df["run"], labels, shorts)}

    searches = {p: found for p in paths if Path(p).is_dir() and (found := search_section(p)) is not None}
    # A trial the search's pruner stopped ended as it was asked to: not a run that needs attention.
    pruned = {str(Path(r).resolve()) for s in searches.values()
              for r, state in zip(s.trials.get("run_dir", []), s.trials.get("state", [])) if state == "pruned" and r}
    df.loc[[str(Path(r).resolve()) in pruned for r in df["run"]], "status"] = "pruned"
    title = _title(df, grouped)
    blocks = [Heading(1, title),
              Para(f"{len(df)} run{'s' * (len(df) != 1)} from {', '.join(str(p) for p in paths)}: "
                   f"{_status_line(df)}. Generated {time.strftime('%Y-%m-%d %H:%M')}.")]
    for sweep, g, axes, fixed in grouped:
        head = f"Run {g['run'].iloc[0]}" if len(df) == 1 else f"Sweep {sweep}"
        blocks.append(Heading(2, head + (f" — axes: {', '.join(axes)}" if axes else "")))
        if fixed:
            blocks.append(Para("Same in every run: " + ", ".join(f"{k}={num(v)}" for k, v in fixed.items())))
        training, evaluation = verdict_report.with_intervals(g, *run_tables(g, axes))
        blocks += [Table(training, caption="Training"), Table(evaluation, caption="Evaluation and cost")]
        blocks += trainer_drift.blocks(g["run"], {r: by_run[r] for r in g["run"]})
    blocks += verdict_report.section(df)
    blocks += studies.section(df)  # sweeps run as +study=NAME: the paper's question answered, in one sentence
    bad = df[df["status"].isin(BAD_STATUS) | df["error"].notna()]
    if len(bad):
        blocks += [Heading(2, "Runs that need attention"),
                   Table(pd.DataFrame({"run": bad["name"], "status": bad["status"],
                                       "error / notes": [clip(e if not isnan(e) else n, 300)
                                                         for e, n in zip(bad["error"], bad["notes"])]}))]
    blocks += _curve_blocks(df, grouped, by_run, max_curve_runs)
    blocks += cost_section(df, list(labels), list(shorts), paper)
    evaluated = df[df["eval_avg"].notna()] if "eval_avg" in df else df.iloc[:0]
    evals = collect_evals(evaluated) if len(evaluated) else pd.DataFrame()
    curves = collect_curves(evaluated, keys=["format", "length"]) if len(evaluated) else pd.DataFrame()
    blocks += early_stop.section(df, by_run, evals, curves)
    blocks += _search_blocks(searches)
    if paper:
        blocks += paper_tables.section(df, grouped, *accuracy_measure(df))
        blocks += verdict_report.paper_noise(paper_tables.paper_rows())
    blocks += [Heading(2, "Transition detection, run by run"),
               Table(pd.DataFrame({"run": shorts, "": labels,
                                   "format acquired": [num(v) for v in df["acquisition_step"]],
                                   "transition": [num(v) for v in df["transition_step"]],
                                   "confidence": df["transition_confidence"].fillna(DASH).tolist(),
                                   "best ckpt": [num(v) for v in df["best_checkpoint"]],
                                   "why": df["transition_reason"].fillna("no metrics")}))]

    for b in blocks:  # the markdown links the PNGs; the HTML embeds them
        if isinstance(b, Image):
            (files / b.name).write_bytes(b.png)
    md, page = out / "report.md", out / "report.html"
    md.write_text(render_md(blocks, files.name), encoding="utf-8")
    page.write_text(render_html(blocks, title), encoding="utf-8")
    return {"markdown": md, "html": page, "plots": files}


def _search_blocks(searches: dict) -> list:
    """A tina.search directory's section: objective by trial, the best trial, parameter importances."""
    blocks = []
    for path, found in searches.items():
        best = found.best
        blocks += [Heading(2, f"Search {path}: {found.objective} ({found.direction})"),
                   Para(f"Best: trial {best['number']}, {num(best['value'])}, with "
                        + ", ".join(f"{k}={num(v)}" for k, v in best["params"].items())
                        if best else "No trial completed yet."),
                   Table(found.table(), caption="Trials. Objective: of complete trials only. Pruned: stopped "
                         "by the pruner at that step, with its pruning metric there (a different measure); "
                         "such a trial ended as asked and needs no attention.")]
        if len(found.importances):
            n = int((found.trials.state == "complete").sum())
            blocks.append(Table(found.importances.assign(importance=[f"{v:.2f}" for v in found.importances.importance]),
                                caption=f"Parameter importances (fANOVA) from {n} complete trials"
                                        + (": too few to rank parameters with confidence; a rough guide only"
                                           if n < MIN_TRIALS_FOR_IMPORTANCE else "")))
        if found.png:
            blocks.append(Image(f"search_{len(blocks)}.png", found.png, "search: objective by trial, pruning metric, "
                                "importances", caption="Objective by trial (pruned marked), the pruning metric by "
                                "step, importances"))
    return blocks


def _default_out(first) -> Path:
    p = Path(first)
    return p if p.is_dir() else p.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.report",
                                 description="Write report.md and a self-contained report.html "
                                             "for runs and sweeps.")
    ap.add_argument("paths", nargs="+", help="sweep or run directories")
    ap.add_argument("--out", help="output directory (default: the first path)")
    ap.add_argument("--paper", action="store_true", help="add the paper's tables beside the runs")
    ap.add_argument("--prices", help="price table YAML (default: tina/prices.yaml)")
    ap.add_argument("--max-curve-runs", type=int, default=MAX_CURVE_RUNS)
    ap.add_argument("--no-cache", action="store_true", help="recompute every run")
    ap.add_argument("--workers", type=int, default=None, help="processes for collecting runs")
    a = ap.parse_args(argv)
    try:
        paths = build(a.paths, out=a.out, paper=a.paper, prices=a.prices,
                      max_curve_runs=a.max_curve_runs, cache=not a.no_cache, workers=a.workers)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in paths.values():
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
