"""`python -m tina.status SWEEP_DIR`: the outcome of every job of a sweep, with no driver running.

A sweep's driver (the `python -m tina.train -m ...` process) may be gone: logged out, killed. The
truth lives in files every job writes itself (summary.json), and for jobs that never ran or died
hard, in SLURM's accounting. SLURM's state alone misleads: Hydra turns a Python exception into a
COMPLETED job, so the run's own summary comes first and SLURM fills in only what it cannot know.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from hydra.experimental.callback import Callback

from tina import run_dir as rd
from tina.errors import RunDirError
from tina.overrides import command, override
from tina.run_status import RunStatus, status_of

# {array job id: [job number of each task]} for arrays `tina.sweep rerun` submitted: their task i is not job i.
RERUNS = "reruns.json"
# SLURM states that mean the job's process is gone, whatever its summary last said.
_SLURM_DEAD = {"CANCELLED", "FAILED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


def _slurm_states(sweep: Path) -> dict[int, dict]:
    """{job num: {job_id, state}} from the sweep's .submitit folder and sacct (empty without SLURM)."""
    folders = [p for p in (sweep / ".submitit").glob("*") if p.is_dir()]
    if not folders or not shutil.which("sacct"):
        return {}
    ids = sorted({p.name.split("_")[0] for p in folders})
    out = subprocess.run(
        ["sacct", "-X", "-n", "-P", "-o", "JobID,State", "-j", ",".join(ids)],
        capture_output=True, text=True, timeout=30,
    ).stdout
    renumbered = rd.read_json(sweep / RERUNS)
    states = {}
    for line in out.splitlines():
        job_id, _, state = line.partition("|")
        array_id, _, tasks = job_id.partition("_")
        for task in _task_range(tasks) if tasks else [0]:
            num = renumbered[array_id][task] if array_id in renumbered else task
            states[num] = {"job_id": f"{array_id}_{task}" if tasks else job_id, "state": state.split()[0]}
    return states


def _task_range(tasks: str) -> list[int]:
    """sacct shows pending array tasks folded: '[0-3%8]', '[1,4-5]', or a single '2'."""
    nums = []
    for part in tasks.strip("[]").split("%")[0].split(","):
        lo, _, hi = part.partition("-")
        nums.extend(range(int(lo), int(hi or lo) + 1))
    return nums


def _job_num(path: Path) -> int | None:
    head = path.name.split("_", 1)[0]
    return int(head) if head.isdigit() else None


def sweep_status(sweep: Path) -> list[dict]:
    """One row per job (or one for a single run directory): num, run_dir, status, reason, steps,
    stop_step, slurm job id and state, error. Damaged files give a row that says so, never a crash."""
    if not sweep.is_dir():
        raise FileNotFoundError(f"no sweep or run directory at {sweep}")
    if rd.is_run(sweep):
        return [{"num": 0, "run_dir": str(sweep), **rd.run_state(sweep), "slurm_job": None, "slurm_state": None}]
    slurm = _slurm_states(sweep)
    runs = {_job_num(p): p for p in sweep.iterdir() if p.is_dir() and _job_num(p) is not None and rd.is_run(p)}
    rows = []
    for num in sorted(set(runs) | set(slurm)):
        run = runs.get(num)
        job = slurm.get(num, {})
        state = rd.run_state(run) if run else {"status": None, "reason": None, "steps": None, "stop_step": None,
                                               "error": None, "attempts": None}
        if state["status"] is None or state["status"] == RunStatus.NOT_STARTED:
            if job.get("state") == "PENDING":
                state["status"] = RunStatus.PENDING
            elif job.get("state") == "CANCELLED":
                state["status"] = RunStatus.CANCELLED
            elif state["status"] is None:
                state["status"] = RunStatus.NOT_STARTED
        elif state["status"] == RunStatus.RUNNING and job.get("state") in _SLURM_DEAD:
            state["status"], state["reason"] = RunStatus.DIED, f"SLURM says {job['state']}: killed before it could write its summary"
        rows.append({"num": num, "run_dir": str(run) if run else None, **state,
                     "slurm_job": job.get("job_id"), "slurm_state": job.get("state")})
    if not rows:  # not a sweep: a folder of single runs (outputs/DATE) or of sweeps (a search's trial_NNN/)
        nested = [r for p in sorted(sweep.iterdir()) if p.is_dir() and not p.name.startswith(".")
                  for r in _rows_or_none(p)]
        rows = [{**r, "num": i} for i, r in enumerate(nested)]
    if not rows:
        raise FileNotFoundError(f"{sweep} holds no tina runs (no run directories, no .submitit jobs)")
    return rows


def _rows_or_none(path: Path) -> list[dict]:
    if rd.is_run(path):
        return sweep_status(path)
    if any(_job_num(p) is not None for p in path.iterdir()) or (path / ".submitit").is_dir():
        try:
            return sweep_status(path)
        except FileNotFoundError:
            return []
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tina.status", description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="a sweep, a run, a folder of runs (outputs/DATE) or a search")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    try:
        rows = sweep_status(args.sweep)
    except FileNotFoundError as e:
        print(f"tina.status: {e}", file=sys.stderr)
        return 2
    never = _never_submitted(args.sweep, rows)
    rows += [{"num": n, "run_dir": None, "status": RunStatus.NOT_STARTED, "reason": "never submitted (the sweep's driver "
              "stopped first)", "steps": None, "stop_step": None, "error": None, "attempts": None, "slurm_job": None,
              "slurm_state": None} for n in never]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_rows(rows)
        todo = _rerun_hint(args.sweep, rows)
        return 0 if all(finished(r) for r in rows) and not todo else 1
    return 0 if all(finished(r) for r in rows) else 1


def finished(row: dict) -> bool:
    """A status row (or summary) of a run that finished: RunStatus.finished."""
    status = status_of(row.get("status"))
    return status is not None and status.finished


def print_rows(rows: list[dict]) -> None:
    """status, steps, final reward... one line per job, the run directory as a path to paste back."""
    for r in rows:
        steps = f"{r['steps']}/{r['stop_step'] or '?'}" if r["steps"] is not None else "-"
        if (r.get("attempts") or 0) > 1:  # requeued, preempted or rerun: each attempt is in its summary.json
            steps += f" ({r['attempts']} attempts)"
        slurm = f"  [{r['slurm_job']} {r['slurm_state']}]" if r["slurm_job"] else ""
        where = r["run_dir"] or f"job {r['num']} (no directory)"
        why = r["error"] or r["reason"]
        print(f"{r['status']:13s} {steps:>9s}  {where}{slurm}{f'  {why}' if why else ''}")


class SweepSummary(Callback):
    """Remembers the sweep directory when a multirun starts, so `tina.train` can end with every job's
    outcome and the next commands, also when a job failed (Hydra then skips on_multirun_end)."""

    sweeps: list[Path] = []

    def on_multirun_start(self, config, **kwargs) -> None:
        SweepSummary.sweeps.append(Path(config.hydra.sweep.dir))


def print_sweep_summary(sweep: Path) -> None:
    try:
        rows = sweep_status(sweep)
    except FileNotFoundError:
        return  # refused before any job ran: nothing to show
    done = sum(finished(r) for r in rows)
    print(f"\nsweep {sweep}: {done} of {len(rows)} jobs finished")
    print_rows(rows)
    print(f"\nstatus:  {command('python', '-m', 'tina.status', sweep)}\n"
          f"report:  {command('python', '-m', 'analysis.report', sweep)}", flush=True)


# SLURM states of a job that is still queued or running (a requeued preemption resumes by itself).
ALIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING",
         "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING"}


def needs_rerun(row: dict) -> bool:
    """A status row (tina.status) of a job that is neither finished nor still on its way:
    RunStatus.needs_rerun, unless SLURM still has the job (a preempted job it requeues)."""
    status = status_of(row["status"]) or RunStatus.UNREADABLE  # an unknown status wants a person
    return status.needs_rerun and row.get("slurm_state") not in ALIVE


def _never_submitted(sweep: Path, rows: list[dict]) -> list[int]:
    """Jobs of a `tina.train -m` sweep (counted from its multirun.yaml) that have no row: its driver
    stopped before submitting them."""
    from tina.plan import compose_sweep, recorded_overrides

    if not (sweep / "multirun.yaml").exists():
        return []  # a run, a folder of runs, a search: no job list to compare with
    try:
        jobs = len(compose_sweep(recorded_overrides(sweep), multirun=True)[2])
    except Exception:  # not a tina.train -m sweep: only what the rows say
        return []
    return sorted(set(range(jobs)) - {r["num"] for r in rows})


def rerun_command(path: Path) -> str:
    """The command that relaunches what did not finish at `path`: tina.sweep rerun for a sweep (or a
    job of one: its sweep), tina.train in the run directory with its own overrides for a single run."""
    if rd.is_run(path) and not (path.parent / "multirun.yaml").is_file():
        return command("python", "-m", "tina.train", override("hydra.run.dir", str(path)), *rd.read_overrides(path))
    return command("python", "-m", "tina.sweep", "rerun", path.parent if rd.is_run(path) else path)


def _rerun_hint(sweep: Path, rows: list[dict]) -> set[int]:
    """End with the command that relaunches what did not finish, when something did not: a job that
    needs it, or one the sweep's driver never submitted (rows of their own, see _never_submitted).
    A search resumes with `tina.search --resume`, a folder of runs has no one command: no hint there."""
    todo = {r["num"] for r in rows if needs_rerun(r)}
    if rd.is_run(sweep):
        if todo:
            try:
                print(f"to rerun it: {rerun_command(sweep)}")
            except RunDirError as e:  # its recorded overrides are damaged: no command to give
                print(f"to rerun it: run tina.train with its overrides and hydra.run.dir={sweep} ({e})")
    elif todo and (sweep / "multirun.yaml").exists():
        print(f"{len(todo)} job(s) to rerun (jobs {sorted(todo)}): {rerun_command(sweep)}")
    return todo


if __name__ == "__main__":
    sys.exit(main())
