"""``python -m analysis.compare DIR... [--baseline KEY=VALUE] [--json]``: is a difference real?

For each sweep (the runs sharing a parent directory, under each DIR given), every arm (a
combination of the swept values; runs that differ only in train.seed are seeds of one arm) is
compared with the baseline arm, per benchmark and for the mean over benchmarks, or on the
held-out split where the sweep has no benchmark evaluation: the difference in percentage points,
its 95% interval, a p-value and a verdict (analysis.verdicts says how and why).

What is compared: each run's final weights (the "adapter" evaluation, else its last evaluated
checkpoint; never the best checkpoint, which is chosen on the same problems), and for held-out
accuracy RUN/heldout.json's "final" outcomes. Answers pair by problem id; two records with
different problem sets are refused (one line), never paired by position. Records written before
problem ids pair by position only when their settings and problem counts agree.

Default baseline: the arm at the paper's default of each axis (analysis.paper: LoRA rank 32,
lr 1e-6, GRPO) where the sweep has it, else the sweep's first arm.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from analysis import verdicts as vd
from analysis.cells import sort_key
from analysis.paper import SECTIONS
from analysis.row import scalar
from analysis.runs import find_runs
from tina import run_dir as rd
from tina.evaluate.results import read_results

HELDOUT = "heldout"  # the measure's name where a run has no benchmark evaluation
MEAN = "mean"  # the mean over benchmarks
SEED_KEYS = ("train.seed",)  # what makes runs of one arm replicates rather than arms


class CompareError(ValueError):
    """A comparison that cannot be made honestly; its message is one line saying why."""


def _paper_defaults() -> dict:
    """{our override key: the paper's default}: a Table 4 axis's value in the other sections."""
    by_column = {pcol: axes for _, pcol, _, axes, _ in SECTIONS}
    seen: dict = {}
    for _, _, fixed, _, _ in SECTIONS:
        for pcol, v in fixed.items():
            seen.setdefault(pcol, set()).add(v)
    return {key: next(iter(vals)) for pcol, vals in seen.items() if len(vals) == 1
            for key in by_column.get(pcol, ())}


PAPER_DEFAULTS = _paper_defaults()


@dataclass
class Outcome:
    """One run's per-problem accuracies on one measure."""
    values: np.ndarray
    ids: list | None  # None: a record written before problem ids
    n_samples: int
    settings: dict | None = None


@dataclass
class Run:
    path: Path
    overrides: dict
    outcomes: dict = field(default_factory=dict)  # measure -> Outcome


def _overrides(run: Path) -> dict:
    try:
        items = yaml.safe_load((run / rd.HYDRA / rd.HYDRA_OVERRIDES).read_text()) or []
    except (OSError, yaml.YAMLError):
        items = []
    out = {}
    for item in items if isinstance(items, list) else []:
        key, eq, val = str(item).partition("=")
        key = key.lstrip("+~")
        if eq and not key.startswith(("hydra.", "hydra/")) and key not in ("train.output_dir", *SEED_KEYS):
            out[key] = scalar(val)
    return out


def _final_records(run: Path) -> dict:
    """{benchmark: record} of the run's final weights: "adapter", else its last checkpoint."""
    best: dict = {}
    for r in read_results(run):
        ck = str(r.get("checkpoint"))
        if ck == "base" or not isinstance(r.get("per_problem"), list):
            continue
        rank = math.inf if ck == "adapter" else (r.get("step") or 0)
        if r["benchmark"] not in best or rank > best[r["benchmark"]][0]:
            best[r["benchmark"]] = (rank, r)
    return {b: r for b, (_, r) in best.items()}


def read_run(run: Path) -> Run:
    out = Run(Path(run), _overrides(Path(run)))
    for bench, r in _final_records(Path(run)).items():
        ids = r.get("problem_ids")
        out.outcomes[bench] = Outcome(np.asarray(r["per_problem"], dtype=float),
                                      list(ids) if isinstance(ids, list) else None,
                                      int(r.get("n_samples") or 1) * len(r.get("seeds") or [0]), r.get("settings"))
    try:
        held = rd.read_heldout(run).get("final")
    except rd.RunDirError:
        held = None
    if isinstance(held, dict) and isinstance(held.get("accuracy"), list):
        out.outcomes[HELDOUT] = Outcome(np.asarray([np.nan if a is None else a for a in held["accuracy"]], dtype=float),
                                        list(held.get("problem_ids") or []) or None, int(held.get("n_samples") or 1))
    return out


# ----------------------------------------------------------------------------- pairing
def _keys(ids: list) -> list:
    """Problem ids made unique by occurrence (a set may ask one problem twice)."""
    seen: Counter = Counter()
    out = []
    for i in ids:
        out.append((i, seen[i]))
        seen[i] += 1
    return out


def align(arm: list[Outcome], base: list[Outcome], where: str) -> tuple[np.ndarray, np.ndarray]:
    """(S x n, T x n) per-problem accuracies, problems in one order; CompareError if they cannot pair."""
    every = base + arm
    if all(o.ids is not None for o in every):
        ref = _keys(every[0].ids)
        pos = {k: j for j, k in enumerate(ref)}
        rows = []
        for o in every:
            keys = _keys(o.ids)
            if len(keys) != len(o.values) or set(keys) != set(ref):
                shared = len(set(keys) & set(ref))
                raise CompareError(f"{where}: problem sets differ ({len(keys)} problems against {len(ref)}, "
                                   f"{shared} shared); evaluate both arms on the same problems")
            row = np.empty(len(ref))
            row[[pos[k] for k in keys]] = o.values
            rows.append(row)
    else:
        n = {len(o.values) for o in every}
        settings = {json.dumps(o.settings, sort_keys=True, default=str) for o in every}
        if len(n) > 1 or len(settings) > 1 or any(o.settings is None for o in every):
            raise CompareError(f"{where}: records without problem ids (written before them) with different "
                               f"settings or problem counts ({sorted(n)}); they cannot be paired: evaluate again")
        rows = [o.values for o in every]
    m = np.vstack(rows)
    m = m[:, ~np.isnan(m).any(0)]  # a problem whose gold could not be read by some run
    return m[len(base):], m[:len(base)]


# ----------------------------------------------------------------------------- arms
def _label(key: tuple, axes: list, only=None) -> str:
    return ",".join(f"{a}={_fmt(v)}" for a, v in zip(axes, key) if only is None or a in only)


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    return str(a) == str(b)


def choose_baseline(keys: list[tuple], axes: list[str], wanted: tuple | None = None) -> tuple:
    """The baseline arm: `wanted` (KEY, VALUE) narrows; the paper's defaults decide; else the first."""
    pool = keys
    if wanted is not None:
        k, v = wanted
        if k not in axes:
            raise CompareError(f"--baseline {k}={v}: {k} is not an axis of this sweep (axes: {', '.join(axes) or 'none'})")
        pool = [c for c in keys if _same(c[axes.index(k)], v)]
        if not pool:
            have = [_fmt(v) for v in sorted({c[axes.index(k)] for c in keys}, key=sort_key)]
            raise CompareError(f"--baseline {k}={v}: no arm has it ({k} takes {', '.join(have)})")
    score = [(sum(a in PAPER_DEFAULTS and _same(c[i], PAPER_DEFAULTS[a]) for i, a in enumerate(axes)), -j)
             for j, c in enumerate(pool)]
    best = max(range(len(pool)), key=lambda j: score[j])
    return pool[best] if score[best][0] > 0 else pool[0]


def arms(runs: list[Run]) -> tuple[list[str], dict]:
    """(axes, {arm key: [runs]}): axes are the overrides that vary, keys sorted by value."""
    keys = sorted({k for r in runs for k in r.overrides})
    axes = [k for k in keys if len({repr(r.overrides.get(k)) for r in runs}) > 1]
    groups: dict = {}
    for r in runs:
        groups.setdefault(tuple(r.overrides.get(a) for a in axes), []).append(r)
    order = sorted(groups, key=lambda c: tuple(sort_key(v) for v in c))
    return axes, {c: groups[c] for c in order}


# ----------------------------------------------------------------------------- comparisons
def _measures(runs: list[Run]) -> list[str]:
    benches = sorted({m for r in runs for m in r.outcomes if m != HELDOUT})
    if benches:
        return benches + ([MEAN] if len(benches) > 1 else [])
    return [HELDOUT] if any(HELDOUT in r.outcomes for r in runs) else []


def _one(arm_runs, base_runs, measure, benches, where) -> dict | None:
    parts = benches if measure == MEAN else [measure]
    a = [r for r in arm_runs if all(p in r.outcomes for p in parts)]
    b = [r for r in base_runs if all(p in r.outcomes for p in parts)]
    if not a or not b:
        return None
    mats = [align([r.outcomes[p] for r in a], [r.outcomes[p] for r in b], f"{where} {p}") for p in parts]
    res = {k: float(v) for k, v in vd.paired([m[0] for m in mats], [m[1] for m in mats]).items()}
    acc_a, acc_b = vd.accuracy_interval([m[0] for m in mats]), vd.accuracy_interval([m[1] for m in mats])
    return {"delta": 100 * res["delta"], "ci": [100 * res["low"], 100 * res["high"]], "p": res["p"],
            "se": 100 * res["se"], "df": res["df"] if math.isfinite(res["df"]) else None,
            "arm_accuracy": 100 * acc_a[0], "arm_ci": [100 * acc_a[1], 100 * acc_a[2]],
            "baseline_accuracy": 100 * acc_b[0], "baseline_ci": [100 * acc_b[1], 100 * acc_b[2]],
            "n_problems": int(sum(m[0].shape[1] for m in mats)),
            "n_samples": int(min(r.outcomes[p].n_samples for r in a + b for p in parts)),
            "n_seeds": len(a), "n_seeds_baseline": len(b)}


def compare_sweep(sweep: str, runs: list[Run], baseline: tuple | None = None) -> dict:
    """{sweep, axes, baseline, measures, comparisons: [...]} for one sweep's runs."""
    axes, groups = arms(runs)
    out = {"sweep": sweep, "axes": axes, "baseline": None, "comparisons": [], "notes": []}
    if not axes:
        out["notes"].append("no axis: every run has the same overrides (nothing to compare)")
        return out
    base = choose_baseline(list(groups), axes, baseline)
    out["baseline"] = _label(base, axes)
    measures = _measures(runs)
    if not measures:
        out["notes"].append("no per-problem outcomes (no evaluation, no RUN/heldout.json): nothing to compare")
    benches = [m for m in measures if m not in (MEAN, HELDOUT)]
    for measure in measures:
        family = []
        for key, members in groups.items():
            if key == base:
                continue
            differs = [a for a, v, w in zip(axes, key, base) if not _same(v, w)]
            where = f"{sweep}: {_label(key, axes)} vs {_label(base, axes)}"
            res = _one(members, groups[base], measure, benches, where)
            if res is None:
                out["notes"].append(f"{_label(key, axes)}: no {measure} outcome in it or in the baseline")
                continue
            family.append({"sweep": sweep, "axis": ",".join(differs), "arm": _label(key, axes, differs),
                           "baseline": _label(base, axes, differs), "benchmark": measure, **res})
        for c, padj in zip(family, vd.adjust([c["p"] for c in family])):
            c["p_adjusted"] = float(padj)
            c["verdict"] = vd.verdict(c["delta"], padj)
        out["comparisons"] += family
    return out


def compare(paths, baseline: tuple | None = None) -> list[dict]:
    """One compare_sweep result per sweep (runs grouped by their parent directory) under `paths`."""
    sweeps: dict = {}
    for p in paths:
        for run in find_runs(p):
            sweeps.setdefault(str(run.parent), []).append(run)
    return [compare_sweep(s, [read_run(r) for r in dict.fromkeys(rs)], baseline) for s, rs in sweeps.items()]


# ----------------------------------------------------------------------------- output
METHOD = (f"paired by problem; {int(vd.LEVEL * 100)}% t interval with training seeds as a random effect "
          f"(Welch-Satterthwaite df); family-wise error: {vd.FWER_NAME}, alpha {vd.ALPHA}, one family "
          f"per sweep and benchmark")


def text(results: list[dict]) -> str:
    lines = []
    for s in results:
        lines.append(f"{s['sweep']}: axes {', '.join(s['axes']) or 'none'}; baseline {s['baseline'] or '-'}")
        if s["comparisons"]:
            head = ("arm", "benchmark", "arm %", "base %", "delta pp", "95% CI", "p", "p adj", "verdict",
                    "problems x samples x seeds")
            rows = [head] + [(c["arm"], c["benchmark"], f"{c['arm_accuracy']:.1f}", f"{c['baseline_accuracy']:.1f}",
                              f"{c['delta']:+.1f}", f"[{c['ci'][0]:+.1f}, {c['ci'][1]:+.1f}]", f"{c['p']:.3f}",
                              f"{c['p_adjusted']:.3f}", c["verdict"],
                              f"{c['n_problems']} x {c['n_samples']} x {c['n_seeds']}/{c['n_seeds_baseline']}")
                             for c in s["comparisons"]]
            width = [max(len(r[i]) for r in rows) for i in range(len(head))]
            lines += ["  " + "  ".join(v.ljust(w) for v, w in zip(r, width)).rstrip() for r in rows]
        lines += [f"  note: {n}" for n in s["notes"]]
    lines.append(f"method: {METHOD}")
    return "\n".join(lines)


def parse_baseline(text_: str | None) -> tuple | None:
    if text_ is None:
        return None
    key, eq, val = text_.partition("=")
    if not eq or not key:
        raise CompareError(f"--baseline {text_}: expected KEY=VALUE, e.g. lora.rank=32")
    return key.lstrip("+"), scalar(val)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.compare", description=__doc__.split("\n\n")[1])
    ap.add_argument("paths", nargs="+", help="sweep or run directories (a folder of sweeps too)")
    ap.add_argument("--baseline", help="KEY=VALUE: the arm to compare against (default: the paper's default, else the first)")
    ap.add_argument("--json", action="store_true", help="print one JSON object with a list 'comparisons'")
    a = ap.parse_args(argv)
    try:
        results = compare(a.paths, parse_baseline(a.baseline))
    except (CompareError, FileNotFoundError, ValueError) as e:
        print(f"analysis.compare: {e}", file=sys.stderr)
        return 2
    if a.json:
        print(json.dumps({"method": METHOD, "fwer_method": vd.FWER_METHOD, "alpha": vd.ALPHA, "level": vd.LEVEL,
                          "comparisons": [c for s in results for c in s["comparisons"]],
                          "sweeps": [{k: v for k, v in s.items() if k != "comparisons"} for s in results]}, indent=1))
    else:
        print(text(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
