"""The paper's tables (Tina, arXiv 2504.15777, Tables 2-4) beside this reproduction: one table per
ablation of Table 4, the paper's rows and the reproduction's on the same axis, all in percent,
so a reader compares numbers without converting units or looking across tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from analysis import cost
from analysis.cells import DASH, isnan, num, sort_key
from analysis.document import Heading, Para, Table
from tina.evaluate.testsets import BENCHMARKS
from tina.run_status import RunStatus

FINISHED = {s.value for s in RunStatus if s.finished}

BENCH = {"aime24": "AIME24", "aime25": "AIME25", "amc23": "AMC23", "math500": "MATH500",
         "gpqa": "GPQA", "minerva": "Minerva"}  # paper_results.csv column -> header
_COST_ITEM = {"Tina-Open-RS3-DrGRPO": "Dr.GRPO"}
# Table 4's sections: (title, paper column, the paper rows' fixed values, our columns for that
# axis, the cost table's item for the section's extra runs)
SECTIONS = [
    ("Data set", "dataset", {"lora_rank": 32, "lr": 1e-6, "algorithm": "grpo"},
     ("dataset.name", "experiment"), None),
    ("Learning rate", "lr", {"dataset": "limr", "lora_rank": 32, "algorithm": "grpo"},
     ("optim.lr",), "learning rate ablation"),
    ("LoRA rank", "lora_rank", {"dataset": "limr", "lr": 1e-6, "algorithm": "grpo"},
     ("lora.rank",), "LoRA rank ablation"),
    ("RL algorithm", "algorithm", {"dataset": "open_rs3", "lora_rank": 32, "lr": 1e-6},
     ("algorithm.name", "algorithm"), None),
]


# Two measures, two columns: the paper's six-benchmark average and this reproduction's measure
# (often the toy task's held-out accuracy) must never read as one comparable number.
PAPER_AVG, OURS = "paper: avg of 6 %", "ours: accuracy %"


def paper_rows() -> pd.DataFrame:
    """paper_results.csv with each Tina row's training cost (USD) from paper_costs.csv."""
    res, costs = cost.paper_results(), cost.paper_costs().set_index("item")
    items = [_COST_ITEM.get(n, n.removeprefix("Tina-")) for n in res["name"]]
    res["train_usd"] = [costs["train_usd"].get(i, np.nan) if k != "baseline" else np.nan
                        for i, k in zip(items, res["kind"])]
    return res


def _matches(row, fixed) -> bool:
    for k, v in fixed.items():
        x = row[k]
        if isinstance(v, (int, float)):  # the CSV gives 32.0 and 1e-06: compare as numbers
            if isnan(x) or not math.isclose(float(x), v, rel_tol=1e-6):
                return False
        elif str(x) != str(v):
            return False
    return True


def _ours_by_paper_column(g: pd.DataFrame) -> dict[str, str]:
    """{paper column: our eval/<benchmark> column} for the benchmarks the sweep evaluated."""
    out = {}
    for c in g.columns:
        b = BENCHMARKS.get(c[5:]) if c.startswith("eval/") else None
        if b is not None and b.paper_column in BENCH and g[c].notna().any():
            out[b.paper_column] = c
    return out


def _mean_pct(s: pd.Series) -> str:
    s = pd.to_numeric(s, errors="coerce").dropna() * 100
    if not len(s):
        return DASH
    return f"{s.mean():.1f}" + (f" ± {s.std():.1f}" if len(s) > 1 else "")


def _repro_rows(sweep_name: str, g: pd.DataFrame, axis: str, axis_header: str, acol) -> list[dict]:
    """One row per value of ``axis`` (as the paper has), averaged over the sweep's other axes."""
    step = g["eval_step"] if "eval_step" in g else pd.Series(np.nan, index=g.index)
    step = step.where(step.notna(), g["best_checkpoint"]).astype(float)
    epochs = g["epochs"].astype(float) if "epochs" in g else np.nan
    d = g.assign(_pct=100 * step / g["steps"].astype(float) * epochs,  # TRL's epoch is linear in steps
                 _usd=pd.to_numeric(g["usd"], errors="coerce"), _key=g[axis].map(sort_key))
    ours = _ours_by_paper_column(g)
    rows = []
    for _, h in sorted(d.groupby("_key", dropna=False), key=lambda kv: kv[0]):
        row = {"source": "this reproduction",
               "model / runs": f"{sweep_name}: {len(h)} run{'s' * (len(h) != 1)}, "
                               f"{int(h['status'].map(lambda s: s in FINISHED).sum())} finished",
               axis_header: num(h[axis].iloc[0])}
        row.update({BENCH[p]: _mean_pct(h[ours[p]]) if p in ours else DASH for p in BENCH})
        row[PAPER_AVG] = DASH  # the paper's measure; ours has a column of its own
        row[OURS] = _mean_pct(h[acol]) if acol else DASH
        row["best at % epoch"] = DASH if isnan(h["_pct"].median()) else f"{h['_pct'].median():.0f}"
        row["train USD"] = num(h["_usd"].mean())
        rows.append(row)
    return rows


def section(df: pd.DataFrame, grouped, acol: str | None, alabel: str | None) -> list:
    """The 'paper beside this reproduction' part of the report."""
    p = paper_rows()
    costs = cost.paper_costs().set_index("item")
    blocks = [Heading(2, "Paper (Tina, arXiv 2504.15777) beside this reproduction"),
              Para("All accuracies in %. Paper: pass@1, one sample per problem, lighteval + vLLM, "
                   f"32k tokens; '{PAPER_AVG}' is the mean over its six benchmarks; 'best at % epoch' is "
                   "where its best checkpoint sits. This reproduction: the runs whose sweep varies "
                   f"the same axis, one row per value (mean ± SD over runs); '{OURS}' is "
                   f"{alabel or 'not available (no accuracy measure yet)'}, a different measure, so in a "
                   f"column of its own; a benchmark column "
                   f"is filled only where that benchmark was evaluated; 'best at' is the best "
                   f"evaluated checkpoint, else the detected transition.")]
    for title, pcol, fixed, our_axes, cost_item in SECTIONS:
        header = title if title != "Data set" else "data set"
        rows = p[(p["kind"] != "baseline") & p.apply(lambda r: _matches(r, fixed), axis=1)]
        rows = rows.sort_values(pcol, key=lambda s: s.map(sort_key))
        table = [{"source": "paper", "model / runs": r["name"], header: num(r[pcol], 4),
                  **{BENCH[b]: f"{r[b]:.1f}" for b in BENCH}, PAPER_AVG: f"{r['avg']:.1f}", OURS: DASH,
                  "best at % epoch": num(r["pct_epoch"]), "train USD": num(r["train_usd"])}
                 for _, r in rows.iterrows()]
        found = []
        for sweep, g, axes, _ in grouped:
            axis = next((a for a in our_axes if a in axes), None)
            if axis is not None:
                table += _repro_rows(str(sweep).rstrip("/").rsplit("/", 1)[-1], g, axis, header, acol)
                found.append(sweep)
        blocks += [Heading(3, title), Table(pd.DataFrame(table))]
        notes = [] if found else [f"No sweep here varies {' or '.join(our_axes)}."]
        if cost_item and cost_item in costs.index:
            c = costs.loc[cost_item]
            notes.append(f"Paper, {cost_item}: {c['train_usd']} USD training + {c['eval_usd']} USD "
                         f"evaluation for its extra runs.")
        blocks += [Para(" ".join(notes))] if notes else []
    base = p[p["kind"] == "baseline"]
    blocks += [Heading(3, "Full-parameter baselines (paper's re-evaluation, %)"),
               Table(pd.DataFrame({"model": base["name"],
                                   **{BENCH[b]: base[b].map(lambda v: f"{v:.1f}") for b in BENCH},
                                   PAPER_AVG: base["avg"].map(lambda v: f"{v:.1f}")}))]
    tot = pd.to_numeric(df["usd"], errors="coerce").sum()
    gh = pd.to_numeric(df["gpu_hours"], errors="coerce").sum()
    blocks.append(Para(f"Paper, all tasks: {costs.loc['all tasks', 'total_usd']} USD (train + eval). "
                       f"This reproduction's training: {gh:.2f} GPU-hours, {tot:.2f} USD over "
                       f"{len(df)} runs."))
    return blocks
