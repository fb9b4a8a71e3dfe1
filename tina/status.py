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

from tina import run_dir as rd

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
    renumbered = json.loads((sweep / RERUNS).read_text()) if (sweep / RERUNS).exists() else {}
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


def sweep_status(sweep: Path) -> list[dict]:
    """One row per job: num, run_dir, status, steps, slurm job id and state, error."""
    if not sweep.is_dir():
        raise FileNotFoundError(f"no sweep directory at {sweep}")
    slurm = _slurm_states(sweep)
    runs = {int(p.name.split("_")[0]): p for p in sweep.iterdir() if (p / ".hydra").is_dir() and p.name[0].isdigit()}
    rows = []
    for num in sorted(set(runs) | set(slurm)):
        run = runs.get(num)
        summary = rd.read_summary(run) if run else {}
        job = slurm.get(num, {})
        status = summary.get("status") or ("pending" if job.get("state") == "PENDING" else "not started")
        if status == "running" and job.get("state") in _SLURM_DEAD:
            status = f"died ({job['state'].lower()})"  # killed hard: no chance to write its summary
        elif job.get("state") == "CANCELLED" and status in ("not started", "pending"):
            status = "cancelled"
        rows.append({
            "num": num, "run_dir": str(run) if run else None, "status": status,
            "steps": max(summary.get("steps") or 0, rd.last_logged_step(run)) if run else None, "stop_step": summary.get("stop_at_step") or summary.get("max_steps"),
            "slurm_job": job.get("job_id"), "slurm_state": job.get("state"), "error": summary.get("error"),
        })
    if not rows:
        raise FileNotFoundError(f"{sweep} holds no tina runs (no <num>_*/.hydra folders, no .submitit jobs)")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args(argv)
    try:
        rows = sweep_status(args.sweep)
    except FileNotFoundError as e:
        print(f"tina.status: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            steps = f"{r['steps']}/{r['stop_step']}" if r["steps"] is not None else "-"
            slurm = f"{r['slurm_job']} {r['slurm_state']}" if r["slurm_job"] else ""
            name = Path(r["run_dir"]).name if r["run_dir"] else f"job {r['num']}"
            print(f"{name:40s} {r['status']:20s} {steps:>10s}  {slurm}  {r['error'] or ''}".rstrip())
        _rerun_hint(args.sweep)
    return 0 if all(r["status"] == "completed" for r in rows) else 1


def _rerun_hint(sweep: Path) -> None:
    """End with the command that relaunches what did not finish, when something did not."""
    from tina.sweep import jobs_to_rerun

    try:
        todo = jobs_to_rerun(sweep)[1]
    except Exception:  # not a tina.train -m sweep (no multirun.yaml): nothing to suggest
        return
    if todo:
        print(f"{len(todo)} job(s) to rerun (jobs {[r['num'] for r in todo]}): python -m tina.sweep rerun {sweep}")


if __name__ == "__main__":
    sys.exit(main())
