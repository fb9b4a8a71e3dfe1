"""The search section of a report: objective by trial, the best trial, parameter importances, pruned trials.

A tina.search sweep directory holds its Optuna study (study.journal) beside the trials' run
directories; this reads both, so the section shows what the study decided (pruned at which step)
next to what each run recorded. Self-contained: a report calls `search_section(SWEEP)` and places
its tables and figure; it is None for a sweep that was not a search.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from analysis.cells import DASH, num
from analysis.plots import MAX_WIDTH_IN, png, subplots
from tina import run_dir as rd
from tina.search import RECORD, STUDY


MIN_TRIALS_FOR_IMPORTANCE = 10  # fANOVA's ranking from fewer complete trials is mostly noise: say so


@dataclass
class SearchSection:
    objective: str  # the summary.json key searched on, e.g. heldout_final.accuracy
    direction: str  # maximize | minimize
    trials: pd.DataFrame  # one row per trial: number, state, value, pruned_at, steps, best, params..., run_dir
    importances: pd.DataFrame  # param, importance (fANOVA, sums to 1); empty below 2 finished trials
    best: dict | None  # {number, value, params, run_dir} of the best complete trial
    png: bytes = field(repr=False, default=b"")  # objective by trial, the pruning metric by step, importances
    metric: str = "pruning metric"  # what a pruned trial's last reported value measures

    def table(self) -> pd.DataFrame:
        """The trials for a reader: the objective and the pruning metric in columns of their own,
        numbers rounded, a dash where there is none, the best trial marked."""
        t = self.trials
        pruned = t.state == "pruned"
        out = pd.DataFrame({
            "trial": t.number, "state": t.state,
            f"objective: {self.objective}": [num(v, 4) if s == "complete" else DASH for v, s in zip(t.value, t.state)],
            "pruned at step": [num(v) if p else DASH for v, p in zip(t.pruned_at, pruned)],
            f"{self.metric} there": [num(v, 4) if p else DASH for v, p in zip(t.value, pruned)],
            "steps": [num(v) for v in t.steps],
            "best": ["★" if b else "" for b in t.best],
        })
        for c in t.columns:
            if c.startswith("param."):
                out[c[len("param."):]] = [num(v, 4) for v in t[c]]
        return out


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
    section.metric = (space.get("prune") or {}).get("metric", "pruning metric")
    if plot:
        section.png = _figure(section, study, section.metric)
    return section


def _figure(section: SearchSection, study, metric: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.ticker import MaxNLocator

    fig, (left, right, bars) = subplots(1, 3, figsize=(MAX_WIDTH_IN, 3.8), layout="constrained")
    t = section.trials
    done, pruned, failed = t[t.state == "complete"], t[t.state == "pruned"], t[~t.state.isin(["complete", "pruned"])]
    low = done.value.min() if len(done) else 0.0  # a pruned trial has no objective: marked along the bottom
    left.plot(done.number, done.value, "o", label="complete")
    if section.best:
        left.plot([section.best["number"]], [section.best["value"]], "*", ms=16, color="gold", mec="k", label="best")
    left.plot(pruned.number, [low] * len(pruned), "x", color="tab:red", ms=9, label="pruned (no objective)")
    if len(failed):
        left.plot(failed.number, [low] * len(failed), "s", mfc="none", color="grey", label="failed / running")
    left.set(xlabel="trial", ylabel=section.objective, title="objective by trial")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are whole numbers
    left.legend()
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
    n = len(done)
    bars.set(xlabel="importance (fANOVA)",
             title=("importances: < 2 complete trials" if not len(imp) else f"importances ({n} trials: rough)"
                    if n < MIN_TRIALS_FOR_IMPORTANCE else "parameter importances"))
    return png(fig)
