"""`python -m tina.sweep rerun SWEEP_DIR [--dry-run]`: relaunch only the jobs of a sweep that did not finish.

A sweep of a hundred jobs where three failed, two were cancelled and the driver died before
submitting the rest should cost those jobs again, not a hundred. The jobs are expanded again from
what the sweep recorded (SWEEP_DIR/multirun.yaml: its overrides and launcher settings), each
keeps its job number and so its run directory, and tina.train resumes it from its own last
checkpoint there. Finished jobs are never launched, so not one of their files is touched.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path


from tina import run_dir as rd
from tina.plan import compose_sweep, recorded_overrides
from tina.run_status import RunStatus
from tina.status import RERUNS, finished, needs_rerun, sweep_status

def jobs_to_rerun(sweep: Path) -> tuple[list[dict], list[dict]]:
    """(every job's row with its overrides, the rows of those to rerun)."""
    _, _, jobs = compose_sweep(recorded_overrides(sweep), multirun=True)
    try:
        rows = {r["num"]: r for r in sweep_status(sweep)}
    except FileNotFoundError:
        rows = {}  # not one job started
    out = []
    for num, overrides in enumerate(jobs):
        row = rows.get(num) or {"num": num, "run_dir": None, "status": RunStatus.NOT_STARTED, "slurm_state": None}
        run = Path(row["run_dir"]) if row.get("run_dir") else None
        saved = rd.saved_steps(run) if run else []
        out.append({**row, "overrides": overrides, "resume_from": saved[-1] if saved else None})
    return out, [r for r in out if needs_rerun(r)]


def _record_array(sweep: Path, before: set[str], nums: list[int], done: threading.Event) -> None:
    """Write which job number each task of the rerun's array is, once SLURM has named the array, so
    tina.status maps its states onto the right jobs (array task i is job nums[i], not job i)."""
    folder = sweep / ".submitit"
    while not done.is_set():
        new = {p.name.split("_")[0] for p in folder.glob("*_*") if p.is_dir()} - before if folder.is_dir() else set()
        if new:
            path = sweep / RERUNS
            record = rd.read_json(path)
            record.update({array: nums for array in new})
            rd.atomic_write(path, json.dumps(record, indent=1))
            return
        time.sleep(0.2)


def relaunch(sweep: Path, rows: list[dict]) -> None:
    """Launch ``rows`` (jobs_to_rerun's) with the sweep's launcher, each under its own job number."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.plugins import Plugins
    from hydra.core.utils import setup_globals
    from hydra.types import HydraContext

    from tina.hydra_internal import Callbacks
    from tina.train import main as task_function

    setup_globals()
    loader, cfg, _ = compose_sweep(recorded_overrides(sweep), multirun=True)
    HydraConfig.instance().set_config(cfg)
    launcher = Plugins.instance().instantiate_launcher(
        hydra_context=HydraContext(config_loader=loader, callbacks=Callbacks(cfg)),
        task_function=task_function, config=cfg)
    nums = [r["num"] for r in rows]
    if not hasattr(launcher, "renumber"):  # Hydra's own launchers: in this process, one job at a time
        for r in rows:
            launcher.launch([r["overrides"]], initial_job_idx=r["num"])
        return
    launcher.renumber = dict(enumerate(nums))
    before = {p.name.split("_")[0] for p in (sweep / ".submitit").glob("*")}
    done = threading.Event()
    watcher = threading.Thread(target=_record_array, args=(sweep, before, nums, done), daemon=True)
    watcher.start()
    try:
        launcher.launch([r["overrides"] for r in rows], initial_job_idx=0)
    finally:
        done.set()
        watcher.join()


def rerun(sweep: Path, dry_run: bool = False) -> int:
    _, todo = jobs_to_rerun(sweep)
    for r in todo:
        where = f"resume from step {r['resume_from']}" if r["resume_from"] else "from the start"
        print(f"job {r['num']:>3}  {r['status']:20s} {where:24s} {' '.join(r['overrides'])}")
    if not todo:
        print(f"nothing to rerun in {sweep}")
        return 0
    if dry_run:
        return 0
    relaunch(sweep, todo)
    left = [r for r in jobs_to_rerun(sweep)[0] if not finished(r)]
    print(f"{len(todo)} jobs rerun; {len(left)} not finished" + (f": jobs {[r['num'] for r in left]}" if left else ""))
    return 1 if left else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tina.sweep", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("rerun", help="relaunch the jobs that failed, were cancelled or preempted, or never started")
    p.add_argument("sweep", type=Path)
    p.add_argument("--dry-run", action="store_true", help="list them, launch nothing")
    args = ap.parse_args(argv)
    try:
        return rerun(args.sweep, args.dry_run)
    except FileNotFoundError as e:
        print(f"tina.sweep: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
