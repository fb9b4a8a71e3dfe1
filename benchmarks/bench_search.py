"""Idle share of SLURM slots: tina.search's asynchronous trials against batch-synchronous ones.

A batch-synchronous search (hydra-optuna-sweeper's way, `tina.search --synchronous`) starts its next
`parallel` trials only when the slowest trial of the batch has ended; pruned trials end early, so their
slots sit idle. tina.search starts a trial as soon as a slot frees. Both searches here use the same
search space (`lr_rank`: lr log-uniform over 1e-4..3e-2, where >= 5e-3 collapses, so the MedianPruner
has clearly worse trials to stop), seed, trial count, slots and pruner, on the local SLURM cluster
(scripts/slurm-local.sh up), and run at the same time (side by side: both see the same machine load;
the node must have 2 x parallel CPUs free). With at most 10 trials both draw the same configurations
(Optuna's TPE samples its first 10 at random from the seed); which are pruned may differ, as the pruner
compares a trial with those complete at that moment.

Trials must be long enough that pruning shortens them: a trial pays a fixed start-up (Python, torch,
the model, the held-out score before training) whatever its length, so with `--steps 12` a pruned trial
ended nearly as late as a complete one. With `--steps 100` (the default) a complete trial runs ~3x as
long as a pruned one here.

Idle share, precisely: from sacct's Submit, Start and End of every SLURM job a search submitted, over
the window W = [first Submit, last End] and S = `parallel` slots,

    idle share = integral over W of max(0, S - n(t)) dt / (S x |W|)

where n(t) is the number of the search's jobs submitted and not yet ended at t (queued or running). A
queued job holds its slot: the cluster is shared, and waiting behind other users' jobs is not the
search's doing. Also printed:
  - "to last submit": the same over [first Submit, last Submit]; after the last submission both ways
    only drain (the last trials run while nothing is left to start), so this is where they differ;
  - "not running": n(t) counting running jobs only (Start..End): adds SLURM's queue/scheduling wait;
  - the idle slot-seconds split into handoff (from the end that freed a slot to the next submission:
    noticing the end, telling and asking Optuna, starting a `tina.train -m` driver that composes,
    checks and submits), batch wait (the rest before the last submission: slots waiting for the
    batch's slowest trial) and drain (after the last submission);
  - per job: queue wait (Start - Submit), run time (End - Start) of pruned and complete trials, the
    steps they trained, and its seconds outside the training loop (run time - the logged step_times);
  - a replay: the measured slot times (Submit to End) of the trials scheduled both ways by the rules
    above, with the measured handoff and with none, in the order run, in random orders and at 4x the
    trials: which of order, handoff and trial count keeps asynchronous trials from halving the share;
  - the handoff's parts (medians): "driver", from the search starting a trial's `tina.train -m` to
    that driver's sbatch (Submit); "job tail", from the run's final record (summary.json) to SLURM's
    End; "notice", from that record to the search's progress line saying the trial ended.

  python benchmarks/bench_search.py --trials 10 --steps 100 --jobs   # ~13 min here
  python benchmarks/bench_search.py --trials 6 --steps 12 --keep /tmp/bs   # the old, start-up-bound one
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

ROOT = Path(__file__).resolve().parents[1]
MODES = ("async", "batch")


def tiny(steps: int) -> list[str]:
    """A CPU-sized trial: `steps` GRPO steps, a small held-out split, few checkpoints (pruning saves one)."""
    return [f"train.max_steps={steps}", f"train.save_steps={steps}", "dataset.eval_size=16"]


def jobs(sweep: Path) -> list[dict]:
    """Submit, Start, End (datetimes; Start None if it never ran) of every SLURM job the search's trials
    submitted, with the trial's run directory."""
    ids = {p.name.split("_")[0]: p.parents[1] for p in sweep.glob("trial_*/.submitit/*") if p.is_dir()}
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-o", "JobID,Submit,Start,End", "-j", ",".join(sorted(ids))],
                         capture_output=True, text=True, timeout=60).stdout
    rows = []
    for line in out.splitlines():
        job, submit, start, end = line.split("|")
        if submit[:1].isdigit() and end[:1].isdigit():
            rows.append({"job": job, "trial_dir": ids.get(job.split("_")[0]), "submit": datetime.fromisoformat(submit),
                         "start": datetime.fromisoformat(start) if start[:1].isdigit() else None,
                         "end": datetime.fromisoformat(end)})
    return sorted(rows, key=lambda r: r["submit"])


def idle_share(spans: list[tuple[datetime, datetime]], slots: int, start: datetime, stop: datetime) -> tuple[float, float]:
    """(idle share, idle slot-seconds) over [start, stop]: slot-seconds in which fewer than ``slots`` of
    ``spans`` were open, over slots x (stop - start)."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    idle, held, t = 0.0, 0, start
    for when, change in events:
        when = min(max(when, start), stop)
        idle += max(0, slots - held) * (when - t).total_seconds()
        held, t = held + change, when
    idle += max(0, slots - held) * (stop - t).total_seconds()
    total = slots * (stop - start).total_seconds()
    return (idle / total if total > 0 else 0.0), idle


def handoffs(rows: list[dict], slots: int) -> list[float]:
    """Seconds from the end that freed a slot to the submission that refilled it: for each submission
    after the first `slots`, the time since the latest job end before it."""
    ends = sorted(r["end"] for r in rows)
    out = []
    for r in rows[slots:]:
        before = [e for e in ends if e <= r["submit"]]
        if before:
            out.append((r["submit"] - before[-1]).total_seconds())
    return out


def run_facts(run: Path | None, run_s: float | None) -> dict:
    """Steps trained, and the job's seconds outside the training loop (its run time less the sum of the
    logged `step_time`s: Python, torch, the model, the held-out scores, checkpoints), which a trial pays
    whatever its length."""
    if run is None:
        return {}
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    facts = {"steps": summary.get("steps")}
    loop = 0.0
    path = run / "metrics.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            loop += float(json.loads(line).get("step_time") or 0.0)
        except (ValueError, TypeError, AttributeError):
            continue
    if loop and run_s is not None:
        facts["loop_s"], facts["outside_s"] = loop, run_s - loop
    return facts


def driver_times(log: Path, day: datetime) -> dict[str, dict[str, float]]:
    """From the search's progress lines (`HH:MM:SS trial N started|finished|pruned|failed`): when it
    started each trial's driver and when it saw each trial end, by trial directory name (epoch seconds)."""
    out: dict[str, dict[str, float]] = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        m = re.match(r"(\d\d:\d\d:\d\d) trial (\d+) (started|finished|pruned|failed)", line)
        if m:
            when = datetime.combine(day.date(), datetime.strptime(m[1], "%H:%M:%S").time()).timestamp()
            out.setdefault(f"trial_{int(m[2]):03d}", {})["launched" if m[3] == "started" else "seen_end"] = when
    return out


def measure(mode: str, sweep: Path, parallel: int, wall: float | None) -> dict:
    rows = jobs(sweep)
    seen = driver_times(sweep.parent / f"{mode}.log", rows[0]["submit"])
    study = optuna.load_study(study_name="tina", storage=JournalStorage(JournalFileBackend(str(sweep / "study.journal"))))
    state_of = {t.user_attrs.get("trial_dir"): t.state.name for t in study.trials}
    for r in rows:
        r["state"] = state_of.get(str(r["trial_dir"]))
        r["queue_s"] = (r["start"] - r["submit"]).total_seconds() if r["start"] else None
        r["run_s"] = (r["end"] - r["start"]).total_seconds() if r["start"] else None
        run = next((p for p in r["trial_dir"].glob("0_*") if p.is_dir()), None) if r["trial_dir"] else None
        r.update(run_facts(run, r["run_s"]))
        # The handoff's parts: the trial driver's start-up to its sbatch (Python, Hydra, tina's checks,
        # submitit); the job's tail after its final record (summary.json) until SLURM's End; the search
        # noticing that record (progress lines have whole seconds).
        t = seen.get(r["trial_dir"].name if r["trial_dir"] else "", {})
        if "launched" in t:
            r["driver_s"] = r["submit"].timestamp() - t["launched"]
        if run is not None and (run / "summary.json").exists():
            final = (run / "summary.json").stat().st_mtime
            r["tail_s"] = r["end"].timestamp() - final
            if "seen_end" in t:
                r["notice_s"] = t["seen_end"] - final
    first, last_submit, last_end = rows[0]["submit"], max(r["submit"] for r in rows), max(r["end"] for r in rows)
    held = [(r["submit"], r["end"]) for r in rows]
    running = [(r["start"], r["end"]) for r in rows if r["start"]]
    share, idle_s = idle_share(held, parallel, first, last_end)
    share_to_submit, idle_to_submit = idle_share(held, parallel, first, last_submit)
    gaps = handoffs(rows, parallel)
    handoff_s = sum(gaps)  # each gap idles one slot
    states = [t.state.name for t in study.trials]

    def med(key, state=None):
        vals = [r[key] for r in rows if r.get(key) is not None and (state is None or r.get("state") == state)]
        return statistics.median(vals) if vals else float("nan")

    return {
        "mode": mode, "jobs": len(rows), "pruned": states.count("PRUNED"), "complete": states.count("COMPLETE"),
        "failed": states.count("FAIL"), "makespan_s": (last_end - first).total_seconds(), "driver_wall_s": wall,
        "idle_share": share, "idle_to_last_submit": share_to_submit,
        "not_running_share": idle_share(running, parallel, first, last_end)[0],
        "idle_s": idle_s, "handoff_s": handoff_s, "batch_wait_s": max(0.0, idle_to_submit - handoff_s),
        "drain_s": idle_s - idle_to_submit, "handoff_median_s": statistics.median(gaps) if gaps else float("nan"),
        "queue_median_s": med("queue_s"), "run_pruned_s": med("run_s", "PRUNED"), "run_complete_s": med("run_s", "COMPLETE"),
        "steps_pruned": med("steps", "PRUNED"), "steps_complete": med("steps", "COMPLETE"), "outside_median_s": med("outside_s"),
        "driver_median_s": med("driver_s"), "tail_median_s": med("tail_s"), "notice_median_s": med("notice_s"),
        "rows": rows, "held_s": [(r["end"] - r["submit"]).total_seconds() for r in sorted(
            rows, key=lambda r: r["trial_dir"].name if r["trial_dir"] else "")],
    }


def replay(held: list[float], slots: int, handoff: float, synchronous: bool) -> float:
    """Idle share of a search whose trials (in order) hold a slot for ``held`` seconds each (Submit to
    End, as measured; trial i takes slot time held[i]) and take ``handoff`` seconds from the end that frees a slot to the next submission:
    what the scheduling alone does to the measured trials, without the machine's noise."""
    free = [0.0] * slots  # when each slot can submit next
    spans, batch_end = [], 0.0
    for i, h in enumerate(held):
        if synchronous and i % slots == 0 and i:
            free = [batch_end + handoff] * slots
        k = min(range(slots), key=free.__getitem__)
        start = free[k]
        spans.append((start, start + h))
        free[k] = start + h + handoff
        batch_end = max(batch_end, start + h)
    t0 = datetime.fromtimestamp(0)
    as_dt = [(t0 + timedelta(seconds=a), t0 + timedelta(seconds=b)) for a, b in spans]
    return idle_share(as_dt, slots, as_dt[0][0], max(e for _, e in as_dt))[0]


def search_cmd(mode: str, sweep: Path, trials: int, parallel: int, steps: int) -> list[str]:
    return [sys.executable, "-m", "tina.search", "lr_rank", "hydra/launcher=slurm_local", "--trials", str(trials),
            "--parallel", str(parallel), "--dir", str(sweep), *tiny(steps)] + (["--synchronous"] if mode == "batch" else [])


def run_side_by_side(workdir: Path, trials: int, parallel: int, steps: int) -> dict[str, float]:
    """Both searches at once; their drivers' wall times."""
    procs, started, walls = {}, time.time(), {}
    for mode in MODES:
        log = open(workdir / f"{mode}.log", "w")
        procs[mode] = subprocess.Popen(search_cmd(mode, workdir / mode, trials, parallel, steps), cwd=ROOT,
                                       stdout=log, stderr=subprocess.STDOUT, text=True)
    while procs:
        for mode, p in list(procs.items()):
            if p.poll() is not None:
                walls[mode] = time.time() - started
                if p.returncode:
                    sys.exit(f"{mode} search failed ({p.returncode}): {workdir / (mode + '.log')}")
                del procs[mode]
        time.sleep(1)
    return walls


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=10, help="per search (<= 10: both draw the same configurations)")
    ap.add_argument("--parallel", type=int, default=2, help="slots per search")
    ap.add_argument("--steps", type=int, default=100, help="train.max_steps of every trial")
    ap.add_argument("--only-measure", action="store_true", help="measure the searches already in --keep")
    ap.add_argument("--keep", type=Path, help="leave the two searches here (default: a temporary folder)")
    ap.add_argument("--jobs", action="store_true", help="also print every job's timeline")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        walls = {} if args.only_measure else run_side_by_side(workdir, args.trials, args.parallel, args.steps)
        load_after = Path("/proc/loadavg").read_text().split()[:3]
        rows = [measure(mode, workdir / mode, args.parallel, walls.get(mode)) for mode in MODES]
    print(f"{args.trials} trials per search, {args.parallel} slots each, both searches at once; space lr_rank, "
          f"{' '.join(tiny(args.steps))}" + ("" if args.only_measure else
                                             f"; load average before {' '.join(load_before)}, after {' '.join(load_after)}"))
    cols = [("jobs", "jobs", "d"), ("pruned", "pruned", "d"), ("complete", "complete", "d"),
            ("makespan_s", "makespan s", ".0f"), ("idle_share", "idle share", ".1%"),
            ("idle_to_last_submit", "to last submit", ".1%"), ("not_running_share", "not running", ".1%")]
    print(f"{'mode':6s} " + " ".join(f"{h:>{max(len(h), 6)}s}" for _, h, _ in cols))
    for r in rows:
        print(f"{r['mode']:6s} " + " ".join(f"{r[k]:>{max(len(h), 6)}{f}}" for k, h, f in cols))
    a, b = rows
    ratio = lambda k: a[k] / b[k] if b[k] else float("nan")  # noqa: E731
    print(f"async/batch: idle share {ratio('idle_share'):.2f}, to last submit {ratio('idle_to_last_submit'):.2f}, "
          f"makespan {ratio('makespan_s'):.2f}  (halved: {a['idle_share'] <= b['idle_share'] / 2})")
    print("\nidle slot-seconds and where they went; per-job medians")
    cols = [("idle_s", "idle s"), ("handoff_s", "handoff s"), ("batch_wait_s", "batch wait s"), ("drain_s", "drain s"),
            ("handoff_median_s", "handoff med s"), ("queue_median_s", "queue med s"), ("outside_median_s", "outside loop s"),
            ("driver_median_s", "driver s"), ("tail_median_s", "job tail s"), ("notice_median_s", "notice s"),
            ("run_pruned_s", "run pruned s"), ("run_complete_s", "run complete s"), ("steps_pruned", "steps pruned"),
            ("steps_complete", "steps complete")]
    print(f"{'mode':6s} " + " ".join(f"{h:>{len(h)}s}" for _, h in cols))
    for r in rows:
        print(f"{r['mode']:6s} " + " ".join(f"{r[k]:>{len(h)}.0f}" for k, h in cols))
    print("\nreplay: these trials' measured slot times (Submit to End, in trial order) scheduled both ways,"
          "\nwith the measured median handoff and with none")
    for r in rows:
        for h in (r["handoff_median_s"], 0.0):
            ia, ib = replay(r["held_s"], args.parallel, h, False), replay(r["held_s"], args.parallel, h, True)
            print(f"  {r['mode']} run's trials, handoff {h:3.0f} s: async {ia:6.1%}  batch {ib:6.1%}  ratio {ia / ib:.2f}")
    print("the async run's trials in 200 random orders (the first `parallel` kept first: the pruner's start-up"
          "\ntrials always run to the end), and repeated to 4x as many trials; mean idle shares")
    a = rows[0]
    rng = random.Random(0)
    for times in (1, 4):
        for h in (a["handoff_median_s"], 0.0):
            ia = ib = 0.0
            for _ in range(200):
                rest = a["held_s"][args.parallel:] * times + a["held_s"][:args.parallel] * (times - 1)
                rng.shuffle(rest)
                order = a["held_s"][:args.parallel] + rest
                ia += replay(order, args.parallel, h, False) / 200
                ib += replay(order, args.parallel, h, True) / 200
            print(f"  {len(a['held_s']) * times:3d} trials, handoff {h:3.0f} s: async {ia:6.1%}  batch {ib:6.1%}  ratio {ia / ib:.2f}")
    if args.jobs:
        for r in rows:
            t0 = r["rows"][0]["submit"]
            print(f"\n{r['mode']}: job, trial state, submit/start/end (s from the first submission), steps, outside loop s")
            for j in r["rows"]:
                rel = lambda t: f"{(t - t0).total_seconds():6.0f}" if t else "     -"  # noqa: E731
                print(f"  {j['job']:>6s} {str(j.get('state')):9s} {rel(j['submit'])} {rel(j['start'])} {rel(j['end'])} "
                      f"{j.get('steps')!s:>5s} {j.get('outside_s') or float('nan'):6.0f}")


if __name__ == "__main__":
    main()
