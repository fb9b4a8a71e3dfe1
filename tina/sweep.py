"""`python -m tina.sweep rerun SWEEP_DIR [--dry-run]`: relaunch only the jobs of a sweep that did not finish.

A sweep of a hundred jobs where three failed, two were cancelled and the driver died before
submitting the rest should cost those jobs again, not a hundred. The jobs are expanded again from
what the sweep recorded (SWEEP_DIR/multirun.yaml: its overrides and launcher settings), each
keeps its job number and so its run directory, and tina.train resumes it from its own last
checkpoint there. Finished jobs are never launched, so not one of their files is touched.

It ends with every job's fate, because a rerun is often one of several hands on a sweep (another
rerun, a job still alive): ran (and how it ended), already finished (by another process since the
list was made), refused (its run directory held by another process: who) or failed (the error).
The exit status is 0 only when every job it launched ran.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

from hydra.core.utils import JobStatus

from tina import run_dir as rd
from tina.errors import ConfigError, RunDirError
from tina.plan import compose_sweep, recorded_overrides
from tina.run_status import RunStatus
from tina.status import RERUNS, finished, needs_rerun, sweep_status
from tina.train import NOTHING_TO_DO

# What became of a job a rerun launched, in the order the summary line gives them.
FATES = ("ran", "already finished", "refused", "failed")


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


def _run_dir(sweep: Path, num: int) -> Path | None:
    return next((p for p in sweep.glob(f"{num}_*") if p.is_dir() and rd.is_run(p)), None)


def _now(sweep: Path, num: int) -> dict:
    """Job `num`'s run directory as its files say now (status, steps...), or 'not started' without one."""
    if (run := _run_dir(sweep, num)) is not None:
        return rd.run_state(run)
    return {"status": "not started", "reason": "no run directory", "steps": None, "stop_step": None, "error": None}


def _outcome(ret, error: BaseException | None) -> tuple[str, str] | None:
    """(fate, why) from what the launcher returned for a job, or None when it says nothing."""
    if error is not None:  # the launch itself was refused or broke: no job of it ran as asked
        return "refused" if isinstance(error, (ConfigError, SystemExit)) else "failed", _why(error)
    if ret is None:
        return None
    if ret.status == JobStatus.COMPLETED:
        value = ret.return_value
        return ("already finished", "another process finished it first") if isinstance(value, dict) and \
            value.get(NOTHING_TO_DO) else ("ran", "")
    e = ret._return_value  # Hydra's JobReturn keeps the job's exception (its property re-raises it)
    return ("refused" if isinstance(e, RunDirError) else "failed"), _why(e)


def _why(e: BaseException) -> str:
    text = str(e.code if isinstance(e, SystemExit) else e).strip().splitlines()
    return f"{'' if isinstance(e, (ConfigError, SystemExit)) else type(e).__name__ + ': '}{text[0] if text else ''}"


def fate(sweep: Path, row: dict, ret=None, error: BaseException | None = None) -> dict:
    """What became of one job of a rerun: ran (and how it ended), already finished, refused, failed."""
    now = _now(sweep, row["num"])
    told = _outcome(ret, error)
    if told is None:  # the launcher did not say (a SLURM job killed hard): the run's own files do
        why = f"{now['status']}: {now['error'] or now['reason'] or '?'}"
        told = ("ran", "") if finished(now) else ("failed", why)
    name, why = told
    if name == "ran" and not finished(now):
        name, why = "failed", f"ended {now['status']}: {now['error'] or now['reason'] or '?'}"
    elif name == "ran":
        why = f"{now['status']} at step {now['steps']}"
    return {"num": row["num"], "fate": name, "why": why, "status": now["status"]}


def _skip(sweep: Path, row: dict) -> dict | None:
    """The fate of a job that needs no launch any more (finished, or taken by another process since
    the list was made), judged just before launching it; None to launch it."""
    run = _run_dir(sweep, row["num"])
    if run is None:
        return None
    now = rd.run_state(run)
    if finished(now):
        return {"num": row["num"], "fate": "already finished", "why": "another process finished it first",
                "status": now["status"]}
    try:
        rd.lock_of(run).check_free()
    except RunDirError as e:
        return {"num": row["num"], "fate": "refused", "why": _why(e), "status": now["status"]}
    return None


def relaunch(sweep: Path, rows: list[dict]) -> list[dict]:
    """Launch ``rows`` (jobs_to_rerun's) with the sweep's launcher, each under its own job number;
    return each job's fate()."""
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
        fates = []
        for r in rows:
            skipped = _skip(sweep, r)  # another rerun may have run or taken it since the list was made
            if skipped:
                fates.append(skipped)
                continue
            try:
                fates.append(fate(sweep, r, launcher.launch([r["overrides"]], initial_job_idx=r["num"])[0]))
            except (Exception, SystemExit) as e:
                fates.append(fate(sweep, r, error=e))
        return fates
    launcher.renumber = dict(enumerate(nums))
    before = {p.name.split("_")[0] for p in (sweep / ".submitit").glob("*")}
    done = threading.Event()
    watcher = threading.Thread(target=_record_array, args=(sweep, before, nums, done), daemon=True)
    watcher.start()
    returns, error = [None] * len(rows), None
    try:
        returns = launcher.launch([r["overrides"] for r in rows], initial_job_idx=0)
    except (Exception, SystemExit) as e:  # submitit raises for a job killed hard: each run's files tell
        error = e if isinstance(e, (ConfigError, SystemExit)) else None
    finally:
        done.set()
        watcher.join()
    return [fate(sweep, r, ret, error) for r, ret in zip(rows, returns)]


def rerun(sweep: Path, dry_run: bool = False) -> int:
    """List the jobs to rerun, launch them, and print every job's fate; 0 only when all ran to the end."""
    _, todo = jobs_to_rerun(sweep)
    for r in todo:
        where = f"resume from step {r['resume_from']}" if r["resume_from"] else "from the start"
        print(f"job {r['num']:>3}  {r['status']:20s} {where:24s} {' '.join(r['overrides'])}")
    if not todo:
        print(f"nothing to rerun in {sweep}")
        return 0
    if dry_run:
        return 0
    fates = relaunch(sweep, todo)
    print(f"\nrerun of {sweep}:")
    for f in fates:
        print(f"job {f['num']:>3}  {f['fate']:16s} {f['why']}")
    counts = {name: sum(f["fate"] == name for f in fates) for name in FATES}
    print(", ".join(f"{n} {name}" for name, n in counts.items() if n))
    left = [r["num"] for r in jobs_to_rerun(sweep)[0] if not finished(r)]
    if left:
        print(f"not finished now: jobs {left}")
    return 1 if counts["refused"] or counts["failed"] else 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tina.sweep", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("rerun", help="relaunch the jobs that failed, were cancelled or preempted, or never started")
    p.add_argument("sweep", type=Path)
    p.add_argument("--dry-run", action="store_true", help="list them, launch nothing")
    args = ap.parse_args(argv)
    try:
        return rerun(args.sweep, args.dry_run)
    except (FileNotFoundError, ConfigError) as e:
        print(f"tina.sweep: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
