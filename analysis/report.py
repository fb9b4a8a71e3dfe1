"""``python -m analysis.report SWEEP_OR_RUN [...] [--out DIR] [--paper] [--prices FILE]``

Writes ``report.md`` (plots as PNG files in ``report_files/`` next to it) and a self-contained
``report.html`` (the same plots embedded as base64 PNG; no external file, script or font) into
``--out`` (default: the first directory given), then prints the paths written.

What is in it, and why
----------------------
* One table per sweep, one row per run, laid out like the paper's Table 4: the columns that vary
  within the sweep (its ablation axes: swept overrides, plus the resolved dataset / algorithm /
  rank / lr when a whole group such as ``experiment=`` was swept) come first and the rows are
  sorted by them; values that are the same for every run are stated once above the table.
* Runs that failed, went stale or logged nothing are listed with their error, so a sweep is
  judged by its failures too.
* Curves of format reward, completion length, accuracy reward and KL, at most 10 runs per
  figure, with each run's detected transition (``analysis.phase``) as a dashed line: the paper's
  claim is that the best checkpoint sits at or just before it, and this is where to look.
* Cost against accuracy with the Pareto frontier. ONE accuracy measure for all runs, the best
  available for any run: evaluation average (``eval_avg``), else held-out accuracy after
  training, else the final training accuracy reward; runs without it are left out and named
  (mixing measures on one axis would compare unlike things). Cost is USD when any run cost money,
  else GPU-hours, else estimated FLOPs, else wall-clock hours.
* ``--paper``: the paper's rows (Tables 2-4, ``analysis.cost.paper_results``/``paper_costs``) in
  Table 4's sections, each beside the reproduction's runs along the same axis.
"""

from __future__ import annotations

import argparse
import base64
import html
import io
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import cost as _cost
from analysis.collect import CONFIG_COLUMNS, collect, collect_curves, override_columns

__all__ = ["build", "main"]

CURVES = [("format", "format reward"), ("length", "completion length (tokens)"),
          ("accuracy", "accuracy reward"), ("kl", "KL to the base model")]
PER_FIGURE = 10       # runs per curve figure: more lines stop being readable
MAX_CURVE_RUNS = 60   # curves are read from disk: bound the report's time on 1,000-run sweeps
BAD = ("failed", "stale", "empty")
_NEEDED = ("name", "sweep", "status", "steps", "max_steps", "logged_steps", "transition_step",
           "transition_reason", "best_checkpoint", "error", "notes", "usd", "gpu_hours", "epochs")


# ----------------------------------------------------------------------------- formatting
def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA


def _num(v, digits=3) -> str:
    if _isnan(v):
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if v == int(v) and abs(v) < 1e6:
            return str(int(v))
        if abs(v) >= 1e5:
            return f"{v:.2e}"
        if abs(v) < 1e-3:
            return f"{v:.3g}"
        return f"{v:.{digits}g}"
    return str(v)


def _pct(v) -> str:
    return "—" if _isnan(v) else f"{100 * float(v):.1f}"


def _duration(s) -> str:
    if _isnan(s):
        return "—"
    s = float(s)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _sort_key(v):
    if _isnan(v):
        return (2, 0, "")
    if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
        return (0, float(v), "")
    return (1, 0, str(v))


# ----------------------------------------------------------------------------- document blocks
# A report is a list of blocks rendered twice (markdown, HTML), so the two never disagree.
def _h(level, text):
    return ("h", level, text)


def _p(text):
    return ("p", text)


def _table(df: pd.DataFrame):
    return ("table", df)


def _img(name, png, alt):
    return ("img", name, png, alt)


def _md_cell(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def render_md(blocks, files_dir: str) -> str:
    out = []
    for b in blocks:
        if b[0] == "h":
            out.append("#" * b[1] + " " + b[2])
        elif b[0] == "p":
            out.append(b[1])
        elif b[0] == "table":
            df = b[1]
            out.append("| " + " | ".join(_md_cell(c) for c in df.columns) + " |")
            out.append("|" + "---|" * len(df.columns))
            out += ["| " + " | ".join(_md_cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
        elif b[0] == "img":
            out.append(f"![{b[3]}]({files_dir}/{b[1]})")
        elif b[0] == "pair":
            for title, inner in b[1:]:
                out.append(f"**{title}**\n")
                out.append(render_md(inner, files_dir))
        out.append("")
    return "\n".join(out)


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1400px;
 padding:0 16px;color:#1f2328;line-height:1.45}
h1{font-size:1.6em;border-bottom:1px solid #d0d7de;padding-bottom:.3em}
h2{font-size:1.3em;margin-top:1.6em;border-bottom:1px solid #eaeef2;padding-bottom:.2em}
h3{font-size:1.08em;margin-top:1.2em}
.scroll{overflow-x:auto;margin:.5em 0 1em}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:right;white-space:nowrap}
th{background:#f6f8fa;position:sticky;top:0}
td:first-child,th:first-child,td.t{text-align:left}
tr:nth-child(even) td{background:#fafbfc}
td.bad{color:#b42318;font-weight:600}
img{max-width:100%;height:auto;border:1px solid #eaeef2;margin:.4em 0}
.pair{display:flex;gap:24px;align-items:flex-start}
.pair>div{flex:0 1 auto;min-width:0}
.pair>div:last-child{flex:0 0 auto;min-width:280px;max-width:50%}
.pair p{width:0;min-width:100%}
p.note{color:#57606a;font-size:.92em}
ul.toc{font-size:.92em;columns:2}
a{color:#0969da;text-decoration:none}
"""


_NUMERIC = re.compile(r"[-+\d\s.,eE%→±/—]*")


def _html_table(df: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    rows = []
    for r in df.itertuples(index=False):
        cells = []
        for c, v in zip(df.columns, r):
            cls = ' class="bad"' if c == "status" and v in BAD else \
                '' if _NUMERIC.fullmatch(str(v)) else ' class="t"'  # text reads left-aligned
            cells.append(f"<td{cls}>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>')


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _html_blocks(blocks) -> list[str]:
    out = []
    for b in blocks:
        if b[0] == "h":
            out.append(f'<h{b[1]} id="{_slug(b[2])}">{html.escape(b[2])}</h{b[1]}>')
        elif b[0] == "p":
            out.append(f'<p class="note">{html.escape(b[1])}</p>')
        elif b[0] == "table":
            out.append(_html_table(b[1]))
        elif b[0] == "img":
            data = base64.b64encode(b[2]).decode()
            out.append(f'<img alt="{html.escape(b[3])}" src="data:image/png;base64,{data}">')
        elif b[0] == "raw":
            out.append(b[1])
        elif b[0] == "pair":
            cols = "".join(f"<div><h4>{html.escape(t)}</h4>{''.join(_html_blocks(inner))}</div>"
                           for t, inner in b[1:])
            out.append(f'<div class="pair">{cols}</div>')
    return out


def render_html(blocks, title: str) -> str:
    toc = "".join(f'<li><a href="#{_slug(b[2])}">{html.escape(b[2])}</a></li>'
                  for b in blocks if b[0] == "h" and b[1] == 2)
    blocks = [*blocks[:2], ("raw", f'<ul class="toc">{toc}</ul>'), *blocks[2:]]
    body = "\n".join(_html_blocks(blocks))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
            f'</title><meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<style>{_CSS}</style></head><body>\n{body}\n</body></html>\n")


# ----------------------------------------------------------------------------- grouping
def _axes(g: pd.DataFrame, candidates) -> list[str]:
    def varies(c):
        # an override absent from some runs is an axis (default vs set); a config value that is
        # missing (no config.yaml) is unknown, not different
        vals = {repr(v) if not _isnan(v) else "nan" for v in g[c]
                if c not in CONFIG_COLUMNS or not _isnan(v)}
        return len(vals) > 1
    return [c for c in candidates if c in g.columns and varies(c)]


def groups(df: pd.DataFrame):
    """[(sweep, rows sorted by axes, axes, fixed {col: value})], one per sweep directory."""
    ov = override_columns(df)
    cand = ov + [c for c in CONFIG_COLUMNS if c not in ov]  # an override of a config key: once
    out = []
    for sweep, g in df.groupby("sweep", sort=False):
        axes = _axes(g, cand)
        g = g.assign(_k=[tuple(_sort_key(r[a]) for a in axes) + (_sort_key(r["name"]),)
                         for _, r in g.iterrows()]).sort_values("_k").drop(columns="_k")
        fixed = {c: g[c].iloc[0] for c in cand if c in g and c not in axes and not _isnan(g[c].iloc[0])}
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
        return ", ".join(f"{a}={_num(r[a])}" for a in axes)
    name = str(r["name"])
    return name if len(name) <= 40 else name[:37] + "..."


# ----------------------------------------------------------------------------- tables
def run_table(g: pd.DataFrame, axes) -> pd.DataFrame:
    has_eval = g.get("eval_avg") is not None and g["eval_avg"].notna().any()
    benches = [c for c in g.columns if c.startswith("eval/") and g[c].notna().any()]
    rows = []
    for _, r in g.iterrows():
        row = {"run": _short_name(r["name"], bool(axes))}
        row.update({a: _num(r[a]) for a in axes})
        row["status"] = r["status"]
        row["steps"] = f"{_num(r['steps'])}/{_num(r['max_steps'])}"
        row["transition"] = _num(r.get("transition_step"))
        row["best ckpt"] = _num(r.get("best_checkpoint"))
        row["format peak"] = _num(r.get("format_peak"))
        row["acc. reward (final)"] = _num(r.get("accuracy_final"))
        row["length min"] = _num(r.get("length_min"), 4)
        b, f = r.get("heldout_base_accuracy"), r.get("heldout_final_accuracy")
        row["held-out acc. base→final"] = "—" if _isnan(b) and _isnan(f) else f"{_num(b)}→{_num(f)}"
        if has_eval:
            for c in benches:
                row[c[5:] + " %"] = _pct(r[c])
            row["eval avg %"] = _pct(r.get("eval_avg"))
            row["eval ckpt"] = _num(r.get("eval_checkpoint"))
        row["wall"] = _duration(r.get("wall_seconds"))
        row["GPU-h"] = _num(r.get("gpu_hours"))
        row["USD"] = "—" if _isnan(r.get("usd")) else f"{float(r['usd']):.2f}"
        row["FLOPs"] = _num(r.get("flops"))
        issue = r.get("error") if not _isnan(r.get("error")) else r.get("notes")
        row["notes"] = "" if _isnan(issue) else (str(issue)[:80] + ("…" if len(str(issue)) > 80 else ""))
        rows.append(row)
    t = pd.DataFrame(rows)
    keep = ["run", *axes, "status", "steps", "transition", "best ckpt"]
    empty = [c for c in t.columns if c not in keep and t[c].isin(["—", ""]).all()]
    return t.drop(columns=empty)  # a column that says nothing for any run only costs width


def _status_line(df: pd.DataFrame) -> str:
    counts = df["status"].value_counts()
    return ", ".join(f"{n} {s}" for s, n in counts.items())


# ----------------------------------------------------------------------------- plots
def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)  # constrained layout: no second "tight" draw
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def curve_figure(runs: pd.DataFrame, curves: pd.DataFrame, axes, title: str) -> bytes:
    import matplotlib.pyplot as plt

    rows = math.ceil(len(runs) / 3)
    fig, ax = plt.subplots(2, 2, figsize=(13, 7.2 + 0.22 * rows), sharex=True, layout="constrained")
    cmap = plt.get_cmap("tab10")
    for i, (_, r) in enumerate(runs.iterrows()):
        c = curves[curves["run"] == r["run"]]
        color, t = cmap(i % 10), r.get("transition_step")
        label = _label(r, axes) + (f"  (transition {int(t)})" if not _isnan(t) else "")
        for k, (key, name) in enumerate(CURVES):
            a = ax.flat[k]
            s = c[c["metric"] == key].sort_values("step")
            if len(s):
                x, y = s["step"].to_numpy(), s["value"].to_numpy(dtype=float)
                w = max(1, len(y) // 25)  # smoothing for the eye only; detection uses raw values
                ys = pd.Series(y).rolling(w, center=True, min_periods=1).mean().to_numpy()
                if w > 1:
                    thin = slice(None, None, max(1, len(y) // 400))  # the noise's look, not its bytes
                    a.plot(x[thin], y[thin], color=color, alpha=0.18, lw=0.7)
                a.plot(x, ys, color=color, lw=1.6, label=label if k == 0 else None)
            if not _isnan(t):
                a.axvline(float(t), color=color, ls="--", lw=1.1, alpha=0.9)
            a.set_title(name, fontsize=11)
            a.grid(alpha=0.3)
    for a in ax[1]:
        a.set_xlabel("step")
    fig.suptitle(title + "  (dashed: detected transition)", fontsize=12)
    fig.legend(loc="outside lower center", ncol=min(3, max(1, len(runs))), fontsize=9, frameon=False)
    return _png(fig)


def accuracy_measure(df: pd.DataFrame):
    """(column, axis label): the best accuracy measure any run has (module docstring)."""
    for col, label in (("eval_avg", "evaluation average pass@1"),
                       ("heldout_final_accuracy", "held-out accuracy after training"),
                       ("accuracy_final", "accuracy reward, last training step")):
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


def pareto(cost: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Indices of the points no other point beats on both (lower cost, higher accuracy)."""
    order = np.lexsort((-acc, cost))
    best, keep = -np.inf, []
    for i in order:
        if acc[i] > best:
            keep.append(i)
            best = acc[i]
    return np.array(keep, dtype=int)


def _scatter(ax, cost, acc, labels, xlabel, ylabel, title, color):
    front = pareto(cost, acc)
    ax.scatter(cost, acc, s=22, color=color, alpha=0.55, label="run")
    fc, fa = cost[front], acc[front]
    ax.step(fc, fa, where="post", color="black", lw=1.2, label="Pareto frontier")
    ax.scatter(fc, fa, s=40, facecolors="none", edgecolors="black")
    for i in (range(len(cost)) if len(cost) <= 12 else front[:15]):
        ax.annotate(labels[i], (cost[i], acc[i]), fontsize=8, xytext=(4, 4), textcoords="offset points")
    pos = cost[cost > 0]
    if len(pos) and pos.max() / pos.min() > 20:
        from matplotlib.ticker import FuncFormatter, NullFormatter

        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())  # 2x10^1 3x10^1 ... overlap
    ax.margins(0.12)  # room for the labels of the extreme points
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return front


def cost_section(df, labels, shorts, paper: bool) -> list:
    import matplotlib.pyplot as plt

    blocks = [_h(2, "Cost versus accuracy")]
    acol, alabel = accuracy_measure(df)
    ccol, clabel, scale = cost_measure(df)
    if acol is None or ccol is None:
        return blocks + [_p("No run has both an accuracy measure and a cost yet.")]
    d = df.assign(_label=labels, _short=shorts)
    d = d[d[acol].notna() & pd.to_numeric(d[ccol], errors="coerce").notna()]
    left_out = sorted(set(labels) - set(d["_label"]))
    cost = pd.to_numeric(d[ccol]).to_numpy(dtype=float) * scale
    acc = d[acol].to_numpy(dtype=float)
    n = 2 if paper else 1
    fig, ax = plt.subplots(1, n, figsize=(6.5 * n, 4.8), squeeze=False, layout="constrained")
    marks = [lab if len(lab) <= 24 else short for lab, short in zip(d["_label"], d["_short"])]
    front = _scatter(ax[0, 0], cost, acc, marks, clabel, alabel, "this reproduction", "tab:blue")
    if paper:
        p = _paper_rows()
        p = p[p["train_usd"].notna()]
        _scatter(ax[0, 1], p["train_usd"].to_numpy(float), p["avg"].to_numpy(float),
                 list(p["name"].str.replace("Tina-", "")), "train USD (2x L40S at 1 USD/GPU-h)",
                 "average pass@1 over 6 benchmarks (%)", "paper (Tina)", "tab:orange")
    blocks += [_p(f"Accuracy: {alabel} ({acol}). Cost: {clabel} ({ccol}). Circled points are on "
                  f"the Pareto frontier (no other run is both cheaper and more accurate)."),
               _img("cost_vs_accuracy.png", _png(fig), "cost versus accuracy")]
    if left_out:
        blocks.append(_p(f"Left out (no {acol} or no cost): {', '.join(left_out[:20])}"
                         + (" ..." if len(left_out) > 20 else "")))
    fr = d.iloc[front]
    blocks.append(_table(pd.DataFrame({"Pareto run": fr["_short"], "": fr["_label"],
                                       clabel: [_num(v) for v in cost[front]],
                                       alabel: [_num(v) for v in acc[front]]})))
    return blocks


# ----------------------------------------------------------------------------- paper
_COST_ITEM = {"Tina-Open-RS3-DrGRPO": "Dr.GRPO"}
# Table 4's sections: which paper rows belong (fixed values) and the axis they vary
_SECTIONS = [
    ("Data set", "dataset", {"lora_rank": 32, "lr": 1e-6, "algorithm": "grpo"},
     ("dataset.name", "experiment"), None),
    ("Learning rate", "lr", {"dataset": "limr", "lora_rank": 32, "algorithm": "grpo"},
     ("optim.lr",), "learning rate ablation"),
    ("LoRA rank", "lora_rank", {"dataset": "limr", "lr": 1e-6, "algorithm": "grpo"},
     ("lora.rank",), "LoRA rank ablation"),
    ("RL algorithm", "algorithm", {"dataset": "open_rs3", "lora_rank": 32, "lr": 1e-6},
     ("algorithm.name", "algorithm"), None),
]


def _paper_rows() -> pd.DataFrame:
    res, costs = _cost.paper_results(), _cost.paper_costs().set_index("item")
    items = [_COST_ITEM.get(n, n.removeprefix("Tina-")) for n in res["name"]]
    res["train_usd"] = [costs["train_usd"].get(i, np.nan) if r != "baseline" else np.nan
                        for i, r in zip(items, res["kind"])]
    return res


def _matches(row, fixed) -> bool:
    for k, v in fixed.items():
        x = row[k]
        if isinstance(v, (int, float)):  # the CSV gives 32.0 and 1e-06: compare as numbers
            if _isnan(x) or not math.isclose(float(x), v, rel_tol=1e-6):
                return False
        elif str(x) != str(v):
            return False
    return True


def paper_section(df, grouped) -> list:
    p = _paper_rows()
    bench = ["aime24", "aime25", "amc23", "math500", "gpqa", "minerva"]
    blocks = [_h(2, "Paper (Tina, arXiv 2504.15777) beside this reproduction"),
              _p("Paper: pass@1 in %, one sample per problem, lighteval + vLLM, 32k tokens; "
                 "'% epoch' is where the best checkpoint sits. Reproduction: the runs whose sweep "
                 "varies the same axis; accuracy is the report's accuracy measure; 'best at' is the "
                 "evaluated checkpoint, else the detected transition, as % of an epoch.")]
    acol, alabel = accuracy_measure(df)
    costs = _cost.paper_costs().set_index("item")
    for title, pcol, fixed, our_axes, cost_item in _SECTIONS:
        rows = p[(p["kind"] != "baseline") & p.apply(lambda r: _matches(r, fixed), axis=1)]
        rows = rows.sort_values(pcol, key=lambda s: s.map(_sort_key))
        t = rows[["name", pcol, "pct_epoch", *bench, "avg", "train_usd"]].rename(
            columns={"pct_epoch": "% epoch", "train_usd": "train USD"})
        t = t.map(lambda v: "—" if _isnan(v) else _num(v, 4))
        left = [_table(t)]
        if cost_item and cost_item in costs.index:
            c = costs.loc[cost_item]
            left.append(_p(f"{cost_item}: {c['train_usd']} USD training + {c['eval_usd']} USD "
                           f"evaluation for its extra runs."))
        right = []
        for sweep, g, axes, _ in grouped:
            axis = next((a for a in our_axes if a in axes), None)
            if axis is None:
                continue
            others = [a for a in axes if a != axis]
            right.append(_p(f"sweep {sweep}" + (f"; mean over {', '.join(others)}" if others else "")))
            right.append(_table(_repro_table(g, axis, acol)))
        if not right:
            right = [_p(f"No sweep here varies {' or '.join(our_axes)}.")]
        blocks += [_h(3, title), ("pair", ("paper", left), ("this reproduction", right))]
    base = p[p["kind"] == "baseline"][["name", *bench, "avg"]]
    blocks += [_h(3, "Full-parameter baselines (paper's re-evaluation)"),
               _table(base.map(lambda v: _num(v, 4)))]
    tot = pd.to_numeric(df["usd"], errors="coerce").sum()
    gh = pd.to_numeric(df["gpu_hours"], errors="coerce").sum()
    blocks.append(_p(f"Paper, all tasks: {costs.loc['all tasks', 'total_usd']} USD (train + eval). "
                     f"This reproduction's training: {gh:.2f} GPU-hours, {tot:.2f} USD over "
                     f"{len(df)} runs."))
    return blocks


def _repro_table(g, axis, acol) -> pd.DataFrame:
    """One row per value of ``axis`` (as the paper has), averaged over the sweep's other axes."""
    step = g["eval_step"] if "eval_step" in g else pd.Series(np.nan, index=g.index)
    step = step.where(step.notna(), g["best_checkpoint"]).astype(float)
    epochs = g["epochs"].astype(float) if "epochs" in g else np.nan
    pct = 100 * step / g["steps"].astype(float) * epochs  # TRL's epoch is linear in the step
    d = g.assign(_pct=pct, _acc=g[acol].astype(float) if acol else np.nan,
                 _usd=pd.to_numeric(g["usd"], errors="coerce"), _key=g[axis].map(_sort_key))
    rows = []
    for _, h in sorted(d.groupby("_key", dropna=False), key=lambda kv: kv[0]):
        acc = h["_acc"].dropna()
        rows.append({axis: _num(h[axis].iloc[0]), "runs": len(h),
                     "completed": int((h["status"] == "completed").sum()),
                     "accuracy": _num(acc.mean()) + (f" ± {_num(acc.std())}" if len(acc) > 1 else ""),
                     "best at % epoch": "—" if _isnan(h["_pct"].median()) else f"{h['_pct'].median():.0f}",
                     "USD / run": _num(h["_usd"].mean())})
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- the report
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

    title = "tina report"
    blocks = [("h", 1, title),
              _p(f"{len(df)} run{'s' * (len(df) != 1)} from {', '.join(str(p) for p in paths)}: "
                 f"{_status_line(df)}. Generated {time.strftime('%Y-%m-%d %H:%M')}.")]
    for sweep, g, axes, fixed in grouped:
        blocks.append(_h(2, f"Sweep {sweep}" + (f" — axes: {', '.join(axes)}" if axes else "")))
        if fixed:
            blocks.append(_p("Same in every run: " + ", ".join(f"{k}={_num(v)}"
                                                               for k, v in fixed.items())))
        blocks.append(_table(run_table(g, axes)))
    bad = df[df["status"].isin(BAD) | df["error"].notna()]
    if len(bad):
        blocks.append(_h(2, "Runs that need attention"))
        blocks.append(_table(pd.DataFrame({
            "run": bad["name"], "status": bad["status"],
            "error / notes": [str(e if not _isnan(e) else (n if not _isnan(n) else ""))[:300]
                              for e, n in zip(bad["error"], bad["notes"])]})))

    blocks += _curve_blocks(df, grouped, max_curve_runs)
    blocks += cost_section(df, list(labels), list(shorts), paper)
    if paper:
        blocks += paper_section(df, grouped)
    blocks += [_h(2, "Transition detection, run by run"),
               _table(pd.DataFrame({"run": shorts, "": labels,
                                    "transition": [_num(v) for v in df["transition_step"]],
                                    "best ckpt": [_num(v) for v in df["best_checkpoint"]],
                                    "why": df["transition_reason"].fillna("no metrics")}))]

    for b in blocks:  # the markdown links the PNGs; the HTML embeds them
        if b[0] == "img":
            (files / b[1]).write_bytes(b[2])
    md, page = out / "report.md", out / "report.html"
    md.write_text(render_md(blocks, files.name), encoding="utf-8")
    page.write_text(render_html(blocks, title), encoding="utf-8")
    return {"markdown": md, "html": page, "plots": files}


def _curve_blocks(df, grouped, max_runs) -> list:
    blocks, picked, left = [_h(2, "Training curves")], [], max_runs
    for sweep, g, axes, _ in grouped:
        g = g[g["logged_steps"] > 0].iloc[: max(left, 0)]
        left -= len(g)
        if len(g):
            picked.append((sweep, g, axes))
    if not picked:
        return blocks + [_p("No run has logged metrics yet.")]
    curves = collect_curves(pd.concat([g for _, g, _ in picked]), keys=[k for k, _ in CURVES])
    n = shown = 0
    for sweep, g, axes in picked:
        for start in range(0, len(g), PER_FIGURE):
            chunk = g.iloc[start:start + PER_FIGURE]
            n += 1
            title = f"{Path(sweep).name}: runs {start + 1}-{start + len(chunk)} of {len(g)}"
            blocks.append(_img(f"curves_{n}.png", curve_figure(chunk, curves, axes, title), title))
            shown += len(chunk)
    with_data = int((df["logged_steps"] > 0).sum())
    if shown < with_data:
        blocks.append(_p(f"Curves shown for {shown} of {with_data} runs with metrics (the first "
                         f"{max_runs} in table order); --max-curve-runs shows more."))
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
    ap.add_argument("--prices", help="price table YAML (default: analysis/prices.yaml)")
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
