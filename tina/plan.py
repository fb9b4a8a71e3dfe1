"""`python -m tina.plan [-m] OVERRIDES`: what a run or sweep will cost, before anything is submitted.

Takes tina.train's overrides (with -m, a sweep: named sweeps and comma lists expand as Hydra's
basic sweeper expands them) and prints one row per job with the seconds per step it was priced
from, and the totals. Nothing is trained, submitted or written. The same jobs, composed the same
way, are what the launchers hold to `hydra.launcher.budget_usd` before submitting.

  python -m tina.plan experiment=tina_open_rs2
  python -m tina.plan -m +sweeps=main --json
  python -m tina.plan -m lora.rank=4,8,16 --from multirun/2026-11-22/10-00-00   # this cluster's own timings
  python -m tina.plan -m lora.rank=8,32 train.seed=1,2 --detect 3 --base-eval RUN  # power (tina/power.py)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from tina import costmodel, power
from tina.config import PACKAGE_DIR, ConfigError, TinaConfig, check_override_keys, validate_job
from tina.overrides import override

CONF_DIR = PACKAGE_DIR.parent / "conf"


def job_config(cfg: DictConfig) -> TinaConfig | None:
    """A job's composed config (hydra node included) validated as the job will see it; None for
    configs of other Hydra apps, which the launcher presets also serve."""
    if OmegaConf.get_type(cfg) is not TinaConfig:
        return None
    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    job_cfg = copy.deepcopy(cfg)  # cfg stays as composed (set_config marks a hydra node read-only): the job runs from it
    hydra_config.set_config(job_cfg)  # so ${hydra:...} in the job's config resolves as in the job
    try:
        with open_dict(job_cfg):
            del job_cfg["hydra"]  # the task function gets the config without it, too
        job_cfg.train.output_dir = "set-when-the-job-starts"  # Hydra makes the run dir in the job
        return validate_job(job_cfg, checking=True)  # kept for the job's start (tina.train.main)
    finally:
        hydra_config.cfg = saved


def compose_sweep(overrides: list[str], multirun: bool):
    """(config loader, master config, each job's overrides) of `tina.train [-m] OVERRIDES`, expanded
    as Hydra's basic sweeper expands them (named sweeps' params first, then the command line)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    from tina.hydra_internal import BasicSweeper, ConfigLoaderImpl, create_config_search_path

    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(CONF_DIR)))
    cfg = loader.load_configuration("train", overrides, run_mode=RunMode.MULTIRUN if multirun else RunMode.RUN)
    if not multirun:
        return loader, cfg, [list(overrides)]
    params = [f"{k}={v}" for k, v in (cfg.hydra.sweeper.get("params") or {}).items()]
    parsed = OverridesParser.create(config_loader=loader).parse_overrides(params + list(cfg.hydra.overrides.task))
    return loader, cfg, BasicSweeper.split_arguments(parsed, None)[0]


def recorded_overrides(sweep: Path) -> list[str]:
    """The sweep's own command line (hydra and task overrides), pointed at the sweep directory."""
    path = sweep / "multirun.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a sweep directory of python -m tina.train -m")
    try:
        hydra = OmegaConf.load(path).hydra
        keep = [o for o in hydra.overrides.hydra if not o.startswith("hydra.sweep.dir=")]
        task = list(hydra.overrides.task)
    except Exception as e:  # YAML errors (a !!python tag, bad syntax), a file with no hydra.overrides
        raise ConfigError(f"{path}: unreadable ({type(e).__name__}: {str(e).strip().splitlines()[0]})") from None
    return [*keep, override("hydra.sweep.dir", str(sweep.resolve())), *task]


def sweep_jobs(overrides: list[str], multirun: bool) -> list[tuple[list[str], DictConfig]]:
    """(overrides, composed config) of every job `tina.train [-m] OVERRIDES` would run."""
    loader, cfg, jobs = compose_sweep(overrides, multirun)
    return [(job, loader.load_sweep_config(cfg, job) if multirun else cfg) for job in jobs]


def plan(jobs: list[tuple[list[str], TinaConfig]], evidence: list[costmodel.Evidence]) -> dict:
    """{"jobs": rows, totals...} for validated job configs (tina.costmodel.estimate per job)."""
    rows = [costmodel.estimate(tc, evidence, overrides, num) for num, (overrides, tc) in enumerate(jobs)]
    return {"jobs": rows, **costmodel.totals(rows)}


def _fmt(x, spec: str) -> str:
    return format("?", spec[0] + spec[1:].split(".")[0].rstrip("df")) if x is None else format(x, spec)


def render(p: dict) -> str:
    rows = p["jobs"]
    width = max([len("overrides")] + [len(r["overrides"]) for r in rows])
    lines = [f"{'job':>3}  {'overrides':{width}}  {'steps':>6}  {'GPUs':>8}  {'s/step':>7}  {'wall h':>7}  "
             f"{'GPU-h':>8}  {'USD':>9}"]
    for r in rows:
        hw = "cpu" if not r["num_gpus"] else f"{r['num_gpus']}x {r['gpu_type']}"
        lines.append(f"{r['num']:>3}  {r['overrides'] or '(defaults)':{width}}  {_fmt(r['steps'], '>6')}  {hw:>8}  "
                     f"{_fmt(r['seconds_per_step'], '>7.2f')}  {_fmt(r['wall_hours'], '>7.2f')}  "
                     f"{_fmt(r['gpu_hours'], '>8.1f')}  {_fmt(r['usd'], '>9.2f')}")
    lines.append(f"{'':>3}  {'total':{width}}  {'':>6}  {'':>8}  {'':>7}  {p['total_wall_hours']:>7.2f}  "
                 f"{p['total_gpu_hours']:>8.1f}  {p['total_usd']:>9.2f}"
                 f"   (train {p['train_usd']:.2f} + eval {p['eval_usd']:.2f} USD)")
    if not p["complete"]:
        lines.append("incomplete: rows marked ? are not in the totals")
    sources = sorted({r["evidence"] for r in rows if r["evidence"]})
    lines += [f"seconds per step from: {s}" for s in sources]
    notes = sorted({f"{n}" for r in rows for n in r["notes"]})
    lines += [f"note: {n}" for n in notes + p.get("skipped_evidence", [])]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- power (--detect)
def _base_spreads(path: Path | None) -> dict:
    """{measure: (spread, source)} from a base model's evaluation: DIR/eval/<ckpt>/<bench>.json
    ("base" preferred) and, for a run, its held-out outcomes before training (RUN/heldout.json)."""
    from tina import run_dir as rd
    from tina.evaluate.results import read_results

    if path is None:
        return {}
    if not path.is_dir():
        raise FileNotFoundError(f"--base-eval {path}: no such directory")
    out = {}
    for r in sorted(read_results(path), key=lambda r: r.get("checkpoint") != "base"):
        if isinstance(r.get("per_problem"), list) and r["benchmark"] not in out:
            k = int(r.get("n_samples") or 1) * len(r.get("seeds") or [0])
            out[r["benchmark"]] = (power.spread(r["per_problem"], k), f"{r['path']} ({k} samples a problem)")
    held = rd.read_heldout(path).get("base")
    if isinstance(held, dict) and isinstance(held.get("accuracy"), list):
        out["heldout"] = (power.spread(held["accuracy"], int(held.get("n_samples") or 1)),
                          f"{path / rd.HELDOUT} (base)")
    if not out:
        raise FileNotFoundError(f"--base-eval {path}: no per-problem outcomes (eval/*/*.json or {rd.HELDOUT}) there")
    return out


def power_plan(jobs, p: dict, target_pp: float, base: Path | None = None, seed_sd_pp: float = 0.0) -> dict:
    """What the sweep's planned evaluation can tell apart (tina/power.py), and what `target_pp` takes."""
    import dataclasses

    from tina.evaluate import testsets as bm

    arms: dict = {}
    for overrides, _ in jobs:
        arms.setdefault(tuple(o for o in overrides if not o.lstrip("+").startswith("train.seed=")), []).append(1)
    seeds = min(len(v) for v in arms.values())
    tc = jobs[0][1]
    e = tc.eval
    spreads = _base_spreads(base)
    k = e.n_samples * len(e.seeds)
    measures = [(b, min(bm.get(b).size or e.toy_size, e.limit or math.inf), k) for b in e.benchmarks]
    if len(measures) > 1:
        measures.append(("mean", None, k))
    if tc.dataset.eval_size:
        measures.append(("heldout", tc.dataset.eval_size, 1))
    target, sd = target_pp / 100, seed_sd_pp / 100
    rows = []
    for name, n, kk in measures:
        parts = [(b, nn) for b, nn, _ in measures[:len(e.benchmarks)]] if name == "mean" else [(name, n)]
        sp = [(spreads.get(b, (power.WORST_SPREAD, None))[0], nn) for b, nn in parts]
        a, b_ = power.se_terms(sp, sd)
        n_all = sum(nn for _, nn in parts)
        samples = None if name == "heldout" else power.needed_samples(a, b_, seeds, n_all, target)
        more_seeds = power.needed_seeds(a, b_, kk, n_all, target)
        rows.append({"measure": name, "n_problems": n_all, "samples_per_problem": kk, "seeds": seeds,
                     "spread": [s for s, _ in sp], "assumed": [b for b, _ in parts if b not in spreads],
                     "detectable_pp": 100 * power.mdd(a, b_, kk, seeds, n_all),
                     "n_samples_needed": None if samples is None else math.ceil(samples / len(e.seeds)),
                     "seeds_needed": more_seeds,
                     "extra_usd_samples": None if samples is None else _extra_eval_usd(
                         jobs, math.ceil(samples / len(e.seeds)), dataclasses),
                     "extra_usd_seeds": p["total_usd"] * (max(more_seeds, seeds) / seeds - 1)})
    return {"target_pp": target_pp, "alpha": power.ALPHA, "power": power.POWER, "seed_sd_pp": seed_sd_pp,
            "seeds_per_arm": seeds, "sources": {m: s for m, (_, s) in spreads.items()}, "rows": rows}


def _extra_eval_usd(jobs, n_samples: int, dataclasses) -> float:
    """Evaluation dollars of the sweep at n_samples minus at its own (evaluated after training either way)."""
    def eval_usd(n):
        return sum(costmodel.estimate(dataclasses.replace(tc, eval=dataclasses.replace(
            tc.eval, n_samples=n, after_training=True)), [], ov)["eval_usd"] or 0.0 for ov, tc in jobs)
    return max(0.0, eval_usd(n_samples) - eval_usd(jobs[0][1].eval.n_samples))


def render_power(w: dict) -> str:
    lines = [f"detectable difference between two arms at {w['power']:.0%} power (two-sided alpha {w['alpha']}), "
             f"{w['seeds_per_arm']} training seed(s) per arm, paired by problem; to detect {w['target_pp']:g} pp:",
             f"  {'measure':12}  {'problems':>8}  {'samples':>7}  {'detectable pp':>13}  {'eval.n_samples':>14}  "
             f"{'or seeds':>8}  {'extra USD (samples | seeds)':>27}"]
    for r in w["rows"]:
        need = "-" if r["n_samples_needed"] is None else str(r["n_samples_needed"])
        usd = "-" if r["extra_usd_samples"] is None else f"{r['extra_usd_samples']:.2f}"
        lines.append(f"  {r['measure']:12}  {r['n_problems']:>8}  {r['samples_per_problem']:>7}  "
                     f"{r['detectable_pp']:>13.1f}  {need:>14}  {r['seeds_needed']:>8}  "
                     f"{usd + ' | ' + format(r['extra_usd_seeds'], '.2f'):>27}")
    assumed = sorted({m for r in w["rows"] for m in r["assumed"]})
    if assumed:
        lines.append(f"  assumed for {', '.join(assumed)}: every problem solved half the time (p(1-p) = 0.25, the "
                     f"worst case); --base-eval DIR uses a base model's evaluation instead")
    lines += [f"  per-problem difficulty of {m}: {s}" for m, s in w["sources"].items()]
    if w["seeds_per_arm"] > 1:
        lines.append(f"  note: {power.SEEDS_NOTE}")
    lines.append(f"  samples: completions per problem per run (eval.n_samples x eval.seeds); "
                 f"heldout: training's held-out split, one sample a problem (more seeds only); training-seed SD "
                 f"{w['seed_sd_pp']:g} pp (--seed-sd)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tina.plan", description=__doc__.splitlines()[0],
                                 epilog="Overrides are tina.train's (python -m tina.train --help).")
    ap.add_argument("-m", "--multirun", action="store_true", help="plan a sweep, as tina.train -m")
    ap.add_argument("--from", dest="runs", action="append", default=[], type=Path, metavar="DIR",
                    help="finished runs (a run or sweep directory, repeatable) to take seconds per step from")
    ap.add_argument("--json", action="store_true", help="print the plan as JSON")
    ap.add_argument("--detect", type=float, metavar="PP",
                    help="also print the smallest difference the planned evaluation can tell apart, and what "
                         "telling PP percentage points apart would take")
    ap.add_argument("--base-eval", type=Path, metavar="DIR",
                    help="--detect: a base model's evaluation (a run or output directory) for per-problem difficulty")
    ap.add_argument("--seed-sd", type=float, default=0.0, metavar="PP",
                    help="--detect: SD of a run's accuracy between training seeds, in pp (default 0: not included)")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    try:
        check_override_keys(args.overrides)
        skipped: list[str] = []  # runs --from could not take a timing from, and why
        evidence = costmodel.evidence_from_runs(args.runs, skipped)
        jobs = []
        for overrides, cfg in sweep_jobs(args.overrides, args.multirun):
            try:
                jobs.append((overrides, job_config(cfg)))
            except ConfigError as e:
                raise ConfigError(f"job #{len(jobs)} ({' '.join(overrides)}): {e}") from None
        p = {**plan(jobs, evidence), "skipped_evidence": skipped}
        if args.detect is not None:
            if not 0 < args.detect <= 100 or args.seed_sd < 0:
                raise ValueError(f"--detect: a difference in percentage points in (0, 100], got {args.detect}"
                                 if not 0 < args.detect <= 100 else f"--seed-sd: must be >= 0, got {args.seed_sd}")
            p["detect"] = power_plan(jobs, p, args.detect, args.base_eval, args.seed_sd)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"tina.plan: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # Hydra's composition errors (unknown group option, bad override syntax)
        if type(e).__module__.startswith(("hydra", "omegaconf")):
            print(f"tina.plan: {e}", file=sys.stderr)
            return 2
        raise
    print(json.dumps(p, indent=2) if args.json else render(p) + ("\n" + render_power(p["detect"]) if "detect" in p else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
