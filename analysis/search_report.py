"""The search section of a report: objective by trial, the best trial, parameter importances, pruned trials.

A tina.search sweep directory holds its Optuna study (study.journal) beside the trials' run
directories; this reads both, so the section shows what the study decided (pruned at which step)
next to what each run recorded. Self-contained: a report calls `search_section(SWEEP)` and places
its tables and figure; it is None for a sweep that was not a search.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from tina import run_dir as rd
from tina.search import RECORD, STUDY


@dataclass
class SearchSection:
    objective: str  # the summary.json key searched on, e.g. heldout_final.accuracy
    direction: str  # maximize | minimize
    trials: pd.DataFrame  # one row per trial: number, state, value, pruned_at, steps, best, params..., run_dir
    importances: pd.DataFrame  # param, importance (fANOVA, sums to 1); empty below 2 finished trials
    best: dict | None  # {number, value, params, run_dir} of the best complete trial
    png: bytes = field(repr=False, default=b"")  # objective by trial, the pruning metric by step, importances


def _study(sweep: Path):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="tina", storage=JournalStorage(JournalFileBackend(str(sweep / STUDY))))


def search_section(sweep: Path | str, plot: bool = True) -> SearchSection | None:
    """The section for the tina.search directory ``sweep``; None when it holds no study."""
    import optuna

    sweep = Path(sweep)
    if not (sweep / STUDY).exists():
        return None
    space = (yaml.safe_load((sweep / RECORD).read_text()) or {}).get("space", {}) if (sweep / RECORD).exists() else {}
    study = _study(sweep)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if complete else None
    rows = []
    for t in study.trials:
        run = next((p for p in Path(t.user_attrs.get("trial_dir", sweep / "-")).glob("0_*") if p.is_dir()), None)
        rows.append({
            "number": t.number, "state": t.state.name.lower(), "value": t.value,
            "pruned_at": t.user_attrs.get("pruned_at"), "steps": rd.read_summary(run).get("steps") if run else None,
            "best": best is not None and t.number == best.number,
            **{f"param.{k}": v for k, v in t.params.items()}, "run_dir": str(run) if run else None,
        })
    trials = pd.DataFrame(rows)
    importances = pd.DataFrame(columns=["param", "importance"])
    if len(complete) >= 2 and len({tuple(sorted(t.params.items())) for t in complete}) >= 2:
        imp = optuna.importance.get_param_importances(study)
        importances = pd.DataFrame({"param": list(imp), "importance": list(imp.values())})
    section = SearchSection(
        objective=space.get("objective", "value"), direction=study.direction.name.lower(), trials=trials,
        importances=importances,
        best={"number": best.number, "value": best.value, "params": best.params,
              "run_dir": trials.loc[trials.number == best.number, "run_dir"].iloc[0]} if best else None,
    )
    if plot:
        section.png = _figure(section, study, (space.get("prune") or {}).get("metric", "intermediate value"))
    return section


def _figure(section: SearchSection, study, metric: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right, bars) = plt.subplots(1, 3, figsize=(14, 3.6), layout="constrained")
    t = section.trials
    done, pruned, failed = t[t.state == "complete"], t[t.state == "pruned"], t[~t.state.isin(["complete", "pruned"])]
    left.plot(done.number, done.value, "o", label="complete")
    if section.best:
        left.plot([section.best["number"]], [section.best["value"]], "*", ms=16, color="gold", mec="k", label="best")
    low = t.value.min() if t.value.notna().any() else 0.0
    left.plot(pruned.number, [low] * len(pruned), "x", color="tab:red", ms=9, label="pruned (no objective)")
    if len(failed):
        left.plot(failed.number, [low] * len(failed), "s", mfc="none", color="grey", label="failed / running")
    left.set(xlabel="trial", ylabel=section.objective, title="objective by trial")
    left.legend(fontsize=8)
    for trial in study.trials:
        steps = sorted(trial.intermediate_values)
        if not steps:
            continue
        is_pruned = trial.state.name == "PRUNED"
        right.plot(steps, [trial.intermediate_values[s] for s in steps], "--" if is_pruned else "-",
                   color="tab:red" if is_pruned else "tab:blue", alpha=0.8, lw=1)
        if is_pruned:
            right.plot(steps[-1], trial.intermediate_values[steps[-1]], "x", color="tab:red")
    right.set(xlabel="step", ylabel=metric, title="pruning metric (red dashed: pruned)")
    imp = section.importances
    bars.barh(list(imp.param)[::-1], list(imp.importance)[::-1])
    bars.set(xlabel="importance (fANOVA)", title="parameter importances" if len(imp) else "importances: < 2 complete trials")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return buf.getvalue()
