"""`python -m tina.plan [-m] OVERRIDES`: what a run or sweep will cost, before anything is submitted.

Takes tina.train's overrides (with -m, a sweep: named sweeps and comma lists expand as Hydra's
basic sweeper expands them) and prints one row per job with the seconds per step it was priced
from, and the totals. Nothing is trained, submitted or written. The same jobs, composed the same
way, are what the launchers hold to `hydra.launcher.budget_usd` before submitting.

  python -m tina.plan experiment=tina_open_rs2
  python -m tina.plan -m +sweeps=main --json
  python -m tina.plan -m lora.rank=4,8,16 --from multirun/2026-11-22/10-00-00   # this cluster's own timings
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from tina import costmodel
from tina.config import PACKAGE_DIR, ConfigError, TinaConfig, check_override_keys, validate

CONF_DIR = PACKAGE_DIR.parent / "conf"


def job_config(cfg: DictConfig) -> TinaConfig | None:
    """A job's composed config (hydra node included) validated as the job will see it; None for
    configs of other Hydra apps, which the launcher presets also serve."""
    if OmegaConf.get_type(cfg) is not TinaConfig:
        return None
    hydra_config = HydraConfig.instance()
    saved = hydra_config.cfg
    hydra_config.set_config(cfg)  # so ${hydra:...} in the job's config resolves as in the job
    try:
        job_cfg = copy.deepcopy(cfg)
        with open_dict(job_cfg):
            del job_cfg["hydra"]  # the task function gets the config without it, too
        job_cfg.train.output_dir = "set-when-the-job-starts"  # Hydra makes the run dir in the job
        return validate(job_cfg)
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
    hydra = OmegaConf.load(path).hydra
    keep = [o for o in hydra.overrides.hydra if not o.startswith("hydra.sweep.dir=")]
    return [*keep, f"hydra.sweep.dir={sweep.resolve()}", *hydra.overrides.task]


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
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tina.plan", description=__doc__.splitlines()[0],
                                 epilog="Overrides are tina.train's (python -m tina.train --help).")
    ap.add_argument("-m", "--multirun", action="store_true", help="plan a sweep, as tina.train -m")
    ap.add_argument("--from", dest="runs", action="append", default=[], type=Path, metavar="DIR",
                    help="finished runs (a run or sweep directory, repeatable) to take seconds per step from")
    ap.add_argument("--json", action="store_true", help="print the plan as JSON")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    try:
        check_override_keys(args.overrides)
        evidence = costmodel.evidence_from_runs(args.runs)
        jobs = []
        for overrides, cfg in sweep_jobs(args.overrides, args.multirun):
            try:
                jobs.append((overrides, job_config(cfg)))
            except ConfigError as e:
                raise ConfigError(f"job #{len(jobs)} ({' '.join(overrides)}): {e}") from None
        p = plan(jobs, evidence)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"tina.plan: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # Hydra's composition errors (unknown group option, bad override syntax)
        if type(e).__module__.startswith(("hydra", "omegaconf")):
            print(f"tina.plan: {e}", file=sys.stderr)
            return 2
        raise
    print(json.dumps(p, indent=2) if args.json else render(p))
    return 0


if __name__ == "__main__":
    sys.exit(main())
