"""The studies' report sections: a sweep run as `python -m tina.train -m +study=NAME` (study/NAME.yaml)
answers one of the paper's questions, and its section ends in one sentence: the paper's claim, what
this reproduction measured, and whether they agree.

The answer comes from the verdicts (analysis.compare, analysis.verdicts: a paired difference with its
95% interval, `better`, `worse` or `indistinguishable`), never from point estimates alone. Each study
says which verdicts support the claim and which contradict it; the outcome is then
  agree         some support it and none contradicts it (every comparison the claim speaks of);
  partly agree  some support it, none contradicts it, others are indistinguishable;
  disagree      some contradict it;
  inconclusive  none does either: the data cannot tell (or the claim's event, a transition, never came).
A sweep is marked as a study by its `+study=NAME` override, recorded in each run's .hydra/overrides.yaml.

  python -m analysis.studies SWEEP [...]      # each study's table and sentence, as the report has them
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from analysis import compare as cmp
from analysis import verdicts as vd
from analysis.cells import DASH, isnan, num
from analysis.document import Heading, Para, Table
from tina import run_dir as rd
from tina.evaluate.results import read_results

AGREE, PARTLY, DISAGREE, INCONCLUSIVE = "agree", "partly agree", "disagree", "inconclusive"
AGREEMENT = {AGREE: "they agree", PARTLY: "they agree in part", DISAGREE: "they disagree",
             INCONCLUSIVE: "whether they agree cannot be told from these runs"}
STUDY_KEY = "study"  # the override that marks a study: +study=NAME
STUDY_DIR = Path(__file__).resolve().parents[1] / "study"  # study/NAME.yaml, on conf/train.yaml's searchpath

# Which base models were distilled from reasoning traces (the model= options the base_model study sweeps).
DISTILLED = {"tiny": True, "deepseek_r1_distill_qwen_1_5b": True, "tiny_direct": False, "qwen2_5_1_5b_instruct": False}


@dataclass
class Finding:
    outcome: str  # AGREE, PARTLY, DISAGREE or INCONCLUSIVE
    result: str   # what the runs say, in words with the numbers the verdicts rest on
    table: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Study:
    title: str
    claim: str  # the paper's claim, as the sentence states it
    judge: Callable[[str, pd.DataFrame, list], Finding]  # (sweep, its rows of the run table, its runs)


def outcome(supports: int, contradicts: int, neutral: int) -> str:
    """The agreement of a claim with verdicts, of which `supports` bear it out and `contradicts` go against it."""
    if contradicts:
        return DISAGREE
    if not supports:
        return INCONCLUSIVE
    return PARTLY if neutral else AGREE


def sentence(claim: str, finding: Finding) -> str:
    return f"The paper claims {claim}; this reproduction finds {finding.result}; {AGREEMENT[finding.outcome]}."


def _ci(v: float, ci, signed: bool = True) -> str:
    f = "+.1f" if signed else ".1f"
    return f"{v:{f}} [{ci[0]:{f}}, {ci[1]:{f}}]"


def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, dtype=object).fillna(DASH)  # a cell a row lacks: a dash


def _words(values: list) -> str:
    return ", ".join(str(v) for v in values[:-1]) + (" and " if len(values) > 1 else "") + str(values[-1])


def primary(comparisons: list[dict]) -> list[dict]:
    """The comparisons on one measure: the mean over benchmarks, else the only benchmark, else held-out."""
    measures = list(dict.fromkeys(c["benchmark"] for c in comparisons))
    pick = cmp.MEAN if cmp.MEAN in measures else measures[0] if measures else None
    return [c for c in comparisons if c["benchmark"] == pick]


def _measure_words(c: dict) -> str:
    what = "held-out accuracy" if c["benchmark"] == cmp.HELDOUT else \
        "mean pass@1 over the benchmarks" if c["benchmark"] == cmp.MEAN else f"{c['benchmark']} pass@1"
    return f"{what}, {c['n_problems']} problems"


# ----------------------------------------------------------------------------- arms against one baseline
def against_baseline(comparisons: list[dict], axis: str, baseline: str, supports: str, band=None) -> Finding:
    """A claim that the baseline arm beats the others: `supports` is the verdict of an arm that bears it
    out ("worse": the arm loses to the baseline); arms inside `band` (values the claim also counts as
    best) neither support nor contradict it."""
    against = {"worse": "better", "better": "worse"}[supports]
    rows, groups = [], {"support": [], "contradict": [], "neutral": [], "band": []}
    for c in comparisons:
        inside = band is not None and _in(c["arm"].split("=", 1)[1], band)
        kind = "band" if inside else "support" if c["verdict"] == supports else \
            "contradict" if c["verdict"] == against else "neutral"
        value = c["arm"].split("=", 1)[1]
        groups[kind].append(f"{value} ({_phrase(c['verdict'])} it)" if inside else value)
        rows.append({axis: c["arm"].split("=", 1)[1], "accuracy % [95% CI]": _ci(c["arm_accuracy"], c["arm_ci"], False),
                     f"Δ pp vs {baseline} [95% CI]": _ci(c["delta"], c["ci"]), "p (adj.)": f"{c['p_adjusted']:.3f}",
                     "verdict": c["verdict"], "problems × samples × seeds":
                         f"{c['n_problems']} × {c['n_samples']} × {c['n_seeds']}/{c['n_seeds_baseline']}"})
    if not comparisons:
        return Finding(INCONCLUSIVE, "no comparison against the baseline (no per-problem outcomes)")
    base_acc = _ci(comparisons[0]["baseline_accuracy"], comparisons[0]["baseline_ci"], False)
    rows.insert(0, {axis: f"{baseline} (baseline)", "accuracy % [95% CI]": base_acc})
    parts = []
    for kind in ("contradict", "support", "neutral"):
        if groups[kind]:
            verdict = {"contradict": against, "support": supports, "neutral": "indistinguishable"}[kind]
            parts.append(f"{axis}={_words(groups[kind])} {_phrase(verdict)} {axis}={baseline}")
    if groups["band"]:
        parts.append(f"{axis}={_words(groups['band'])} inside the claim's range")
    result = (f"on {_measure_words(comparisons[0])}, {axis}={baseline} at {base_acc}%, and " + "; ".join(parts)
              + " (95% intervals)")
    out = outcome(len(groups["support"]), len(groups["contradict"]), len(groups["neutral"]))
    return Finding(out, result, _table(rows))


def _phrase(verdict: str) -> str:
    return {"better": "better than", "worse": "worse than"}.get(verdict, "indistinguishable from")


def _in(text: str, values) -> bool:
    try:
        return float(text) in values
    except ValueError:
        return False


def judge_rank(sweep: str, g: pd.DataFrame, runs: list) -> Finding:
    axes, groups = cmp.arms(runs)
    if "lora.rank" not in axes:
        return Finding(INCONCLUSIVE, "no LoRA rank axis in this sweep")
    ranks = [k[axes.index("lora.rank")] for k in groups]
    base = 32 if 32 in ranks else 16 if 16 in ranks else None
    if base is None:
        return Finding(INCONCLUSIVE, f"no rank 16 or 32 among the ranks swept ({_words(ranks)})")
    res = cmp.compare_sweep(sweep, runs, ("lora.rank", base))
    comps = [c for c in primary(res["comparisons"]) if c["axis"] == "lora.rank"]
    f = against_baseline(comps, "rank", str(base), "worse", band={16, 32})
    if f.table is not None and "flops" in g:  # training FLOPs beside accuracy: what each rank costs
        rank_of = {r: o.overrides.get("lora.rank") for r, o in zip(g["run"], runs)}
        flops = {}
        for run, fl in zip(g["run"], g["flops"]):
            if not isnan(fl):
                flops.setdefault(str(rank_of.get(run)), []).append(float(fl))
        f.table.insert(1, "training FLOPs", [num(float(np.mean(flops[k]))) if k in flops else DASH
                                             for k in f.table["rank"].str.replace(" (baseline)", "")])
    return f


def judge_data_scaling(sweep: str, g: pd.DataFrame, runs: list) -> Finding:
    axes, groups = cmp.arms(runs)
    key = "dataset.max_samples"
    if key not in axes:
        return Finding(INCONCLUSIVE, f"no {key} axis in this sweep")
    smallest = min(k[axes.index(key)] for k in groups)
    res = cmp.compare_sweep(sweep, runs, (key, smallest))
    f = against_baseline([c for c in primary(res["comparisons"]) if c["axis"] == key], "samples", str(smallest), "worse")
    f.notes.append("Each subset is compared with the smallest; the claim is borne out where a larger one is worse.")
    return f


# ----------------------------------------------------------------------------- base models
def _gain_outcomes(run: Path) -> dict:
    """{measure: (base Outcome, final Outcome)}: held-out before and after training, and each benchmark's
    "base" evaluation against the run's final weights."""
    out = {}
    try:
        held = rd.read_heldout(run)
    except rd.RunDirError:
        held = {}
    pair = []
    for which in ("base", "final"):
        h = held.get(which)
        if isinstance(h, dict) and isinstance(h.get("accuracy"), list):
            pair.append(cmp.Outcome(np.asarray([np.nan if a is None else a for a in h["accuracy"]], dtype=float),
                                    list(h.get("problem_ids") or []) or None, int(h.get("n_samples") or 1)))
    if len(pair) == 2:
        out[cmp.HELDOUT] = tuple(pair)
    final = cmp.read_run(run).outcomes
    for r in read_results(run):
        if r.get("checkpoint") == "base" and isinstance(r.get("per_problem"), list) and r["benchmark"] in final:
            ids = r.get("problem_ids")
            out[r["benchmark"]] = (cmp.Outcome(np.asarray(r["per_problem"], dtype=float), ids if isinstance(ids, list) else None,
                                               int(r.get("n_samples") or 1) * len(r.get("seeds") or [0]), r.get("settings")),
                                   final[r["benchmark"]])
    return out


def judge_base_model(sweep: str, g: pd.DataFrame, runs: list) -> Finding:
    axes, groups = cmp.arms(runs)
    if "model" not in axes:
        return Finding(INCONCLUSIVE, "no model axis in this sweep")
    kinds = {k: DISTILLED.get(str(k[axes.index("model")])) for k in groups}
    unknown = [str(k[axes.index("model")]) for k, v in kinds.items() if v is None]
    notes = [f"not known whether distilled (analysis.studies.DISTILLED): {', '.join(unknown)}"] if unknown else []
    gains: dict = {True: [], False: []}
    for key, members in groups.items():
        if kinds[key] is not None:
            gains[kinds[key]] += [(r, _gain_outcomes(r.path)) for r in members]
    if not gains[True] or not gains[False]:
        return Finding(INCONCLUSIVE, "no distilled and non-distilled base side by side in this sweep", notes=notes)
    shared = set.intersection(*(set(o) for _, o in gains[True] + gains[False]))
    benches = sorted(m for m in shared if m != cmp.HELDOUT)
    parts = benches or ([cmp.HELDOUT] if cmp.HELDOUT in shared else [])
    if not parts:
        return Finding(INCONCLUSIVE, "no run has its accuracy before and after training per problem", notes=notes)
    rows, gain_mats = [], {}
    for distilled in (True, False):
        finals, bases = [], []
        for p in parts:
            f_, b_ = cmp.align([o[p][1] for _, o in gains[distilled]], [o[p][0] for _, o in gains[distilled]],
                               f"{sweep} {p}")
            finals.append(f_)
            bases.append(b_)
        r = vd.paired(finals, bases)
        gain_mats[distilled] = (finals, bases)
        names = sorted({str(run.overrides.get("model")) for run, _ in gains[distilled]})
        rows.append({"base": ", ".join(names), "distilled": "yes" if distilled else "no",
                     "before %": f"{100 * float(np.mean([b.mean() for b in bases])):.1f}",
                     "after %": f"{100 * float(np.mean([f.mean() for f in finals])):.1f}",
                     "gain pp [95% CI]": _ci(100 * float(r["delta"]), (100 * float(r["low"]), 100 * float(r["high"]))),
                     "p": f"{float(r['p']):.3f}", "verdict": vd.verdict(float(r["delta"]), float(r["p"])),
                     "runs": len(gains[distilled])})
    # the difference of the gains, problem by problem (both bases answer the same problems)
    diff = []
    for j, p in enumerate(parts):
        fd, bd = gain_mats[True][0][j], gain_mats[True][1][j]
        fn, bn = gain_mats[False][0][j], gain_mats[False][1][j]
        if fd.shape[1] != fn.shape[1]:
            return Finding(INCONCLUSIVE, f"the two bases were scored on different problems of {p}", pd.DataFrame(rows), notes)
        diff.append((fd - bd.mean(0), fn - bn.mean(0)))
    r = vd.paired([d for d, _ in diff], [n for _, n in diff])
    delta, ci = 100 * float(r["delta"]), (100 * float(r["low"]), 100 * float(r["high"]))
    verdict = vd.verdict(delta, float(r["p"]))
    words = "held-out accuracy" if parts == [cmp.HELDOUT] else "mean pass@1 over " + ", ".join(parts)
    result = (f"on {words}, the distilled base gains {rows[0]['gain pp [95% CI]']} pp ({rows[0]['verdict']} than before "
              f"training) and the non-distilled {rows[1]['gain pp [95% CI]']} pp ({rows[1]['verdict']}), the distilled "
              f"base's gain {_ci(delta, ci)} pp over the other's: {verdict}")
    rows.append({"base": "distilled − non-distilled", "gain pp [95% CI]": _ci(delta, ci), "p": f"{float(r['p']):.3f}",
                 "verdict": verdict})
    out = outcome(verdict == "better", verdict == "worse", 0)
    return Finding(out, result, _table(rows), notes)


# ----------------------------------------------------------------------------- checkpoints and the transition
def _by_checkpoint(run: Path) -> dict:
    """{step: {benchmark: Outcome}} of a run's evaluated checkpoints ("adapter" counted as its last step)."""
    recs = [r for r in read_results(run) if r.get("checkpoint") != "base" and isinstance(r.get("per_problem"), list)]
    last = max([int(r["step"]) for r in recs if r.get("step") is not None] or [0])
    out: dict = {}
    for r in recs:
        step = int(r["step"]) if r.get("step") is not None else last
        if r.get("checkpoint") == "adapter" and r["benchmark"] in out.get(step, {}):
            continue  # the same weights as the last checkpoint, evaluated twice
        ids = r.get("problem_ids")
        out.setdefault(step, {})[r["benchmark"]] = cmp.Outcome(
            np.asarray(r["per_problem"], dtype=float), ids if isinstance(ids, list) else None,
            int(r.get("n_samples") or 1) * len(r.get("seeds") or [0]), r.get("settings"))
    return dict(sorted(out.items()))


def stop_vs_final(run: Path, transition, label: str, reason=None) -> dict:
    """One run: its transition, best checkpoint, and the checkpoint at or before the transition against
    the final one (paired by problem): {"row": table row, "verdict": ... or None, "why": ...}."""
    ck = _by_checkpoint(run)
    row = {"run": label, "evaluated": len(ck), "transition": DASH if isnan(transition) else int(transition)}
    if len(ck) < 2:
        return {"row": row, "verdict": None, "has_transition": not isnan(transition),
                "why": "evaluated at fewer than two checkpoints (eval.checkpoints=all)"}
    benches = sorted(set.intersection(*(set(v) for v in ck.values())))
    acc = {s: float(np.mean([np.nanmean(v[b].values) for b in benches])) for s, v in ck.items()}
    best = max(acc, key=lambda s: (acc[s], -s))
    final = max(ck)
    row.update({"best ckpt": best, "best %": f"{100 * acc[best]:.1f}", "final ckpt": final, "final %": f"{100 * acc[final]:.1f}"})
    if isnan(transition):
        why = reason if isinstance(reason, str) and reason else "no transition detected"  # the detector's own words
        return {"row": row, "verdict": None, "has_transition": False, "why": why}
    before = [s for s in ck if s <= transition]
    row["best at/before transition"] = "yes" if best <= transition else "no"
    if not before or before[-1] == final:
        why = "no checkpoint at or before the transition" if not before else "the transition came after the last checkpoint"
        return {"row": row, "verdict": None, "has_transition": True, "why": why}
    stop = before[-1]
    mats = [cmp.align([ck[stop][b]], [ck[final][b]], f"{label} {b}") for b in benches]
    r = vd.paired([m[0] for m in mats], [m[1] for m in mats])
    delta, ci = 100 * float(r["delta"]), (100 * float(r["low"]), 100 * float(r["high"]))
    row.update({"stop ckpt": stop, "stop − final pp [95% CI]": _ci(delta, ci)})
    return {"row": row, "verdict": vd.verdict(delta, float(r["p"])), "delta": delta, "p": float(r["p"]),
            "has_transition": True, "why": None}


def _runs_stop(g: pd.DataFrame, label_of) -> list[dict]:
    """stop_vs_final of each run; the runs' tests are one family (Holm-Sidak, as analysis.compare's arms)."""
    reasons = g["transition_reason"] if "transition_reason" in g else [None] * len(g)
    res = [stop_vs_final(Path(r), t, label_of(r), why) for r, t, why in zip(g["run"], g["transition_step"], reasons)]
    tested = [x for x in res if "p" in x]
    for x, padj in zip(tested, vd.adjust([x["p"] for x in tested])):
        x["verdict"] = vd.verdict(x["delta"], float(padj))
        x["row"].update({"p (adj.)": f"{x['p']:.3f} ({float(padj):.3f})", "verdict": x["verdict"]})
    return res


def _stop_words(res: list[dict]) -> tuple[str, Counter]:
    v = Counter(x["verdict"] for x in res if x["verdict"] is not None)
    words = (f"stopping at the transition against training on: better in {v['better']}, indistinguishable in "
             f"{v['indistinguishable']}, worse in {v['worse']} (95% intervals, paired by problem)")
    return words, v


def judge_early_stop(sweep: str, g: pd.DataFrame, runs: list) -> Finding:
    res = _runs_stop(g, lambda r: "#" + Path(r).name.split("_")[0])  # the job number, as the report's run tables
    table = _table([x["row"] for x in res])
    with_t = [x for x in res if x["has_transition"]]
    if not with_t:
        runs_ = "its one run" if len(res) == 1 else f"any of its {len(res)} runs"
        return Finding(INCONCLUSIVE, f"no transition detected in {runs_}, so no checkpoint can be placed against it",
                       table, [f"{x['row']['run']}: {x['why']}" for x in res])
    at = sum(x["row"].get("best at/before transition") == "yes" for x in with_t)
    words, v = _stop_words(res)
    result = (f"a transition in {len(with_t)} of {len(res)} runs, the best checkpoint at or before it in {at} of them, "
              f"and {words}")
    notes = [f"{x['row']['run']}: {x['why']}" for x in res if x["why"]]
    return Finding(outcome(v["better"], v["worse"], v["indistinguishable"]), result, table, notes)


def judge_transition_across(sweep: str, g: pd.DataFrame, runs: list) -> Finding:
    axes, groups = cmp.arms(runs)
    arm_of = {str(r.path): cmp._label(k, axes) or "(one arm)" for k, members in groups.items() for r in members}
    res = _runs_stop(g, lambda r: arm_of.get(str(Path(r)), Path(r).name))
    table = _table([x["row"] for x in res]).rename(columns={"run": "data set"})
    by_arm: dict = {}
    for x in res:
        by_arm.setdefault(x["row"]["run"], []).append(x["has_transition"])
    with_t = [a for a, v in by_arm.items() if any(v)]
    without = [a for a, v in by_arm.items() if not any(v)]
    notes = [f"{x['row']['run']}: {x['why']}" for x in res if x["why"]]
    if not with_t:
        return Finding(INCONCLUSIVE, f"no transition detected on any of the {len(by_arm)} data sets, so neither "
                       f"its appearance nor stopping at it can be checked", table, notes)
    words, v = _stop_words(res)
    result = (f"a transition on {len(with_t)} of {len(by_arm)} data sets"
              + (f" (none on {_words(without)})" if without else "") + f", and {words}")
    return Finding(outcome(v["better"], v["worse"] + len(without), v["indistinguishable"]), result, table, notes)


STUDIES = {
    "rank": Study("LoRA rank: training FLOPs against accuracy",
                  "that LoRA ranks 16-32 do best (Table 4: ranks 4-64 on LIMR)", judge_rank),
    "data_scaling": Study("data-set size",
                          "that the smaller curated data set wins (Open-RS2's 7k problems beat OpenR1's 93.7k)",
                          judge_data_scaling),
    "base_model": Study("distilled against non-distilled base",
                        "that format-only adaptation needs prior reasoning aptitude: the distilled base gains from "
                        "LoRA-RL and a non-distilled one does not, or less", judge_base_model),
    "early_stop": Study("the best checkpoint and the transition",
                        "that the best checkpoint sits at or just before the format transition, so stopping there "
                        "loses nothing", judge_early_stop),
    "transition_across_datasets": Study("the transition across data sets",
                                        "that the format transition appears on every data set and stopping at it "
                                        "generalises", judge_transition_across),
}


# ----------------------------------------------------------------------------- the section
def commands(name: str) -> dict:
    """{"toy", "paper", "price", ...}: the commands study/NAME.yaml's header gives (`#   toy:   python ...`)."""
    out = {}
    for line in (STUDY_DIR / f"{name}.yaml").read_text().splitlines():
        head, sep, cmd = line.lstrip("# ").partition(":")
        if sep and cmd.strip().startswith("python -m ") and " " not in head:
            out[head] = cmd.strip()
    return out


def study_of(runs: list) -> str | None:
    names = {str(r.overrides.get(STUDY_KEY)) for r in runs if r.overrides.get(STUDY_KEY) is not None}
    return next(iter(names)) if len(names) == 1 else None


def findings(df: pd.DataFrame) -> list[tuple[str, str, Finding]]:
    """(sweep, study, finding) for each sweep of ``df`` (analysis.runs.collect) run as a study."""
    out = []
    for sweep, g in df.groupby("sweep", sort=False):
        runs = [cmp.read_run(Path(r)) for r in g["run"]]
        name = study_of(runs)
        if name is None:
            continue
        study = STUDIES.get(name)
        if study is None:
            out.append((str(sweep), name, Finding(INCONCLUSIVE, f"no judge for a study named {name!r} "
                                                  f"(analysis.studies.STUDIES: {', '.join(STUDIES)})")))
            continue
        try:
            out.append((str(sweep), name, study.judge(str(sweep), g, runs)))
        except cmp.CompareError as e:
            out.append((str(sweep), name, Finding(INCONCLUSIVE, f"runs that cannot be compared ({e})")))
    return out


def section(df: pd.DataFrame) -> list:
    """One section per study sweep, each ending in its sentence; [] when no sweep is a study."""
    blocks = []
    for sweep, name, f in findings(df):
        study = STUDIES.get(name)
        claim = study.claim if study else f"what study {name} asks"
        blocks += [Heading(2, f"Study {name}" + (f": {study.title}" if study else "")),
                   Para(f"{sweep}, run as `+study={name}` (study/{name}.yaml). Verdicts: {cmp.METHOD}.")]
        if f.table is not None and len(f.table):
            blocks.append(Table(f.table))
        if f.notes:
            blocks.append(Para("Notes: " + "; ".join(f.notes[:12]) + "."))
        blocks.append(Para(sentence(claim, f)))
    return blocks


def main(argv: list[str] | None = None) -> int:
    from analysis.runs import collect

    ap = argparse.ArgumentParser(prog="python -m analysis.studies", description=__doc__.split("\n\n")[0])
    ap.add_argument("paths", nargs="+", help="sweep directories of python -m tina.train -m +study=NAME")
    a = ap.parse_args(argv)
    found = findings(collect(*a.paths, cache=False))
    if not found:
        print("analysis.studies: no sweep there was run as a study (+study=NAME)", file=sys.stderr)
        return 2
    for sweep, name, f in found:
        print(f"{sweep}: study {name}")
        if f.table is not None and len(f.table):
            print(f.table.to_string(index=False))
        for n in f.notes:
            print(f"  note: {n}")
        print(sentence(STUDIES[name].claim if name in STUDIES else name, f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
