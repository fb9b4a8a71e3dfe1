"""The report's verdicts: per sweep the comparison table of analysis.compare, each run's accuracy with
its interval (error bars, and a Pareto frontier on which indistinguishable accuracies tie), and what
the paper's own differences are worth given its benchmarks' problem counts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from analysis import compare as cmp
from analysis import verdicts as vd
from analysis.document import Heading, Para, Table
from tina.evaluate.testsets import BENCHMARKS

# ----------------------------------------------------------------------------- per sweep
def section(df: pd.DataFrame) -> list:
    """'Verdicts': every arm against its sweep's baseline (analysis.compare), one table per sweep."""
    blocks = [Heading(2, "Verdicts: arms against the baseline"),
              Para(f"Differences in percentage points, arm − baseline, on each run's final weights. Method: "
                   f"{cmp.METHOD}. 'indistinguishable' means the data cannot tell the arms apart at this size, "
                   f"not that they are equal; `python -m tina.plan ... --detect PP` sizes a sweep for a difference.")]
    for sweep, g in df.groupby("sweep", sort=False):
        try:
            res = cmp.compare_sweep(str(sweep), [cmp.read_run(Path(r)) for r in g["run"]])
        except cmp.CompareError as e:
            blocks.append(Para(f"{sweep}: not compared: {e}"))
            continue
        rows = [{"arm": c["arm"], "baseline": c["baseline"], "benchmark": c["benchmark"],
                 "arm %": _with_ci(c["arm_accuracy"], c["arm_ci"]),
                 "baseline %": _with_ci(c["baseline_accuracy"], c["baseline_ci"]),
                 "Δ pp [95% CI]": _with_ci(c["delta"], c["ci"], signed=True),
                 "p (adj.)": f"{c['p']:.3f} ({c['p_adjusted']:.3f})", "verdict": c["verdict"],
                 "problems × samples × seeds": f"{c['n_problems']} × {c['n_samples']} × {c['n_seeds']}/{c['n_seeds_baseline']}"}
                for c in res["comparisons"]]
        if rows:
            blocks.append(Table(pd.DataFrame(rows), caption=f"{sweep}: baseline {res['baseline']}"))
        notes = ([] if rows else ["nothing to compare"]) + res["notes"]
        if notes:
            blocks.append(Para(f"{sweep}: " + "; ".join(notes[:10]) + "."))
    return blocks


def _with_ci(v: float, ci, signed: bool = False) -> str:
    f = "+.1f" if signed else ".1f"
    return f"{v:{f}} [{ci[0]:{f}}, {ci[1]:{f}}]"


# ----------------------------------------------------------------------------- per run
def _intervals(run: str, checkpoint) -> dict:
    """{measure: (low, high)} in % for one run: "heldout" (after training), each benchmark and "avg"
    (their mean) at `checkpoint`: t intervals over the run's problems, where per-problem data exist."""
    from tina import run_dir as rd
    from tina.evaluate.results import read_results

    if not Path(run).is_dir():
        return {}
    parts = {}
    try:
        held = rd.read_heldout(run).get("final")
    except rd.RunDirError:
        held = None
    if isinstance(held, dict) and held.get("accuracy"):
        parts["heldout"] = [np.asarray([np.nan if a is None else a for a in held["accuracy"]], dtype=float)]
    evals = {x["benchmark"]: np.asarray(x["per_problem"], dtype=float) for x in read_results(run)
             if x.get("checkpoint") == checkpoint and isinstance(x.get("per_problem"), list)}
    parts.update({b: [v] for b, v in evals.items()})
    if evals:
        parts["avg"] = list(evals.values())
    out = {}
    for name, runs in parts.items():
        runs = [v[~np.isnan(v)][None, :] for v in runs]
        if all(r.shape[1] > 1 for r in runs):
            _, lo, hi = vd.accuracy_interval(runs)
            out[name] = (100 * lo, 100 * hi)
    return out


def run_intervals(df: pd.DataFrame, acol: str) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) in % of each row's accuracy measure (held-out after training, or the evaluation
    mean at the row's eval_checkpoint); NaN without per-problem data."""
    key = {"heldout_final_accuracy": "heldout", "eval_avg": "avg"}.get(acol)
    got = [_intervals(r["run"], r.get("eval_checkpoint")).get(key, (np.nan, np.nan)) for _, r in df.iterrows()]
    return np.array([g[0] for g in got], dtype=float), np.array([g[1] for g in got], dtype=float)


def with_intervals(g: pd.DataFrame, training: pd.DataFrame, evaluation: pd.DataFrame):
    """The run tables with each accuracy's 95% half-width over the run's problems (± pp) beside it."""
    training, evaluation = training.copy(), evaluation.copy()
    for i, (_, r) in enumerate(g.iterrows()):
        iv = _intervals(r["run"], r.get("eval_checkpoint"))
        for table, col, key in [(training, "held-out acc. % base→final", "heldout"),
                                (evaluation, "eval avg %", "avg")] + \
                [(evaluation, f"{c[5:]} %", c[5:]) for c in g.columns if c.startswith("eval/")]:
            if col in table and key in iv:
                table.iloc[i, table.columns.get_loc(col)] += f" ±{(iv[key][1] - iv[key][0]) / 2:.1f}"
    return training, evaluation


def pareto_ties(cost: np.ndarray, acc: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """The frontier when accuracies within noise tie: a run is off it when another costs at most as
    much and is better beyond noise (z test on the two runs' standard errors, two-sided 5%), or ties
    with it and costs less. Runs without an interval compare by their accuracy alone. Sorted by cost."""
    cost, acc = np.asarray(cost, float), np.asarray(acc, float)
    se = np.nan_to_num((np.asarray(high, float) - np.asarray(low, float)) / (2 * stats.norm.ppf(0.975)))
    z = stats.norm.ppf(0.975)
    diff = acc[:, None] - acc[None, :]  # [b, a]: b's accuracy minus a's
    noise = z * np.sqrt(se[:, None] ** 2 + se[None, :] ** 2)
    better = diff > noise
    tie = ~better & ~(-diff > noise)
    cheaper_eq, cheaper = cost[:, None] <= cost[None, :], cost[:, None] < cost[None, :]
    first = np.arange(len(cost))[:, None] < np.arange(len(cost))[None, :]  # identical points: the first stays
    same = (cost[:, None] == cost[None, :]) & tie & (acc[:, None] > acc[None, :]) | \
           (cost[:, None] == cost[None, :]) & (acc[:, None] == acc[None, :]) & first
    dominated = (cheaper_eq & better | cheaper & tie | same).any(0)
    keep = np.flatnonzero(~dominated)
    return keep[np.argsort(cost[keep], kind="stable")]


# ----------------------------------------------------------------------------- the paper's differences
PAPER_DEFAULT_ROWS = {"LoRA rank": "Tina-LIMR", "Learning rate": "Tina-LIMR", "RL algorithm": "Tina-Open-RS3"}


def paper_noise(p: pd.DataFrame) -> list:
    """The paper's Table 4 differences against its default row, with the 95% half-width a difference
    has on each benchmark's problem count (one sample a problem, as the paper evaluated)."""
    from analysis.paper import BENCH

    counts = {b.paper_column: b.size for b in BENCHMARKS.values() if b.paper_column in BENCH}
    rows = []
    for title, default in PAPER_DEFAULT_ROWS.items():
        base = p[p["name"] == default].iloc[0]
        pcol = {"LoRA rank": "lora_rank", "Learning rate": "lr", "RL algorithm": "algorithm"}[title]
        others = p[(p["kind"] == "ablation") & (p["dataset"] == base["dataset"]) & (p[pcol] != base[pcol])]
        if title != "RL algorithm":
            others = others[others["algorithm"] == base["algorithm"]]
        for _, r in others.iterrows():
            row, beyond, ses = {"ablation": title, "row": r["name"], "against": default}, 0, []
            for col, name in BENCH.items():
                a, b, n = r[col] / 100, base[col] / 100, counts[col]
                se = math.sqrt((a * (1 - a) + b * (1 - b)) / n)
                ses.append(se)
                d = 100 * (a - b)
                half = 100 * stats.norm.ppf(0.975) * se
                row[f"{name} Δ (±95%)"] = f"{d:+.1f} (±{half:.1f})" + (" *" if abs(d) > half else "")
                beyond += abs(d) > half
            half = 100 * stats.norm.ppf(0.975) * math.sqrt(sum(s ** 2 for s in ses)) / len(ses)
            d = r["avg"] - base["avg"]
            row["avg Δ (±95%)"] = f"{d:+.1f} (±{half:.1f})" + (" *" if abs(d) > half else "")
            rows.append(row)
    counts_text = ", ".join(f"{BENCH[c]} {n}" for c, n in counts.items())
    return [Heading(3, "What the paper's differences are worth"),
            Para(f"Each Table 4 row minus its default row (pp), and the 95% half-width of a difference between two "
                 f"models on that benchmark's problems ({counts_text}), one sample a problem, answers taken "
                 f"as independent between the two models (paired per-problem data, which the paper does not "
                 f"publish, would narrow it somewhat). * marks a difference beyond that noise."),
            Table(pd.DataFrame(rows))]
