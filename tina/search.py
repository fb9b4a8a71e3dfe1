"""`python -m tina.search SPACE [OVERRIDES]`: Optuna search over any keys, each trial a normal run.

Why not hydra-optuna-sweeper: it pins optuna<3, runs trials in synchronous batches (a batch waits
for its slowest trial while the other GPUs idle) and cannot prune. Here each of `parallel` slots
starts the next trial as soon as its last one ends; each trial is `python -m tina.train -m` with the
user's launcher (basic, local, slurm, slurm_local) in SWEEP/trial_NNN/, so it is a normal run
directory that tina.status, tina.sweep rerun and the reports read; the objective is read from the
run's own summary.json, and the pruner is fed from its metrics.jsonl while it trains. The study
lives in SWEEP/study.journal (Optuna's JournalStorage), so `--resume SWEEP` after the driver is
killed picks up its finished, still running and interrupted trials and completes the count.

  python -m tina.search lr_rank hydra/launcher=slurm_local --trials 12 --parallel 4
  python -m tina.search --resume multirun/2026-11-29/09-00-00-search
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

import yaml
from hydra.errors import HydraException

from tina import run_dir as rd
from tina.config import PACKAGE_DIR, ConfigError, check_override_keys
from tina.overrides import override
from tina.run_status import RunStatus, status_of
from tina.status import finished, needs_rerun, sweep_status

SPACES_DIR = PACKAGE_DIR.parent / "sweeps" / "search"
RECORD, STUDY = "search.yaml", "study.journal"
SPACE_KEYS = {"objective", "direction", "params", "prune", "trials", "parallel", "seed"}
PRUNE_KEYS = {"metric", "window", "warmup_steps", "startup_trials"}
POLL_S = 1.0


# ----------------------------------------------------------------------------- the search space
def load_space(name: str, overrides: list[str]) -> tuple[dict, list[str]]:
    """(space, fixed overrides): SPACE's file with command-line sweeps (`lora.rank=choice(4,8)`)
    replacing its params; the other overrides hold for every trial."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    path = SPACES_DIR / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
        raise ConfigError(f"search space {name!r}: no {path}; known: {', '.join(known)}")
    space = yaml.safe_load(path.read_text()) or {}
    for key, allowed in (("", SPACE_KEYS), ("prune.", PRUNE_KEYS)):
        section = space if not key else space.get("prune") or {}
        for k in section:
            if k not in allowed:
                raise ConfigError(f"{path}: {key}{k}: unknown key; allowed: {', '.join(sorted(allowed))}")
    fixed = []
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.is_sweep_override():
            space["params"][o.key_or_group] = o.input_line.split("=", 1)[1]
        else:
            fixed.append(o.input_line)
    distributions(space)  # refuse a bad range now, not in trial 7
    return space, fixed


def distributions(space: dict) -> dict:
    """Optuna distributions from Hydra's sweep syntax: choice(...)/a,b -> categorical,
    interval(lo, hi) -> float or int (tag(log, ...) for log scale), range(a, b[, step]) -> int."""
    import optuna.distributions as d
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep

    parser, out = OverridesParser.create(), {}
    for key, text in (space.get("params") or {}).items():
        v = parser.parse_override(f"{key}={text}").value()
        log = "log" in getattr(v, "tags", ())
        if isinstance(v, ChoiceSweep):
            out[key] = d.CategoricalDistribution(v.list)
        elif isinstance(v, IntervalSweep) and all(isinstance(x, int) for x in (v.start, v.end)):
            out[key] = d.IntDistribution(int(v.start), int(v.end), log=log)
        elif isinstance(v, IntervalSweep):
            out[key] = d.FloatDistribution(float(v.start), float(v.end), log=log)
        elif isinstance(v, RangeSweep):
            out[key] = d.IntDistribution(int(v.start), int(v.stop) - 1, step=int(v.step))
        else:
            raise ConfigError(f"search params.{key}: {text!r} is not a range; use choice(a, b), interval(lo, hi), "
                              "tag(log, interval(lo, hi)) or range(a, b)")
    if not out:
        raise ConfigError("search params: empty; name at least one key to search, e.g. optim.lr: interval(1e-4, 1e-2)")
    return out


def _value(v):
    return float(f"{v:.4g}") if isinstance(v, float) else v  # 4 digits: readable run directory names


def objective_of(summary: dict, key: str) -> float | None:
    """summary.json's value at a dotted key (heldout_final.accuracy), None when absent or NaN."""
    v = summary
    for part in key.split("."):
        v = v.get(part) if isinstance(v, dict) else None
    return float(v) if isinstance(v, (int, float)) and v == v else None


# ----------------------------------------------------------------------------- one trial
class Trial:
    """One trial's run: launched as `tina.train -m` in its own sweep folder, watched, pruned, told."""

    def __init__(self, search: "Search", trial):
        self.search, self.trial = search, trial
        self.dir = search.dir / f"trial_{trial.number:03d}"
        self.reported = 0  # the last step reported to the study (a resumed trial has some already)

    def run_dir(self) -> Path | None:
        return next((p for p in self.dir.glob("0_*") if rd.is_run(p)), None)

    def launch(self, command: list[str]) -> subprocess.Popen:
        self.dir.mkdir(parents=True, exist_ok=True)
        # A trial's driver outlives a killed search driver (its job goes on): a resumed search finds it
        # by its command line and waits on it.
        self.trial.set_user_attr("driver", {"host": os.uname().nodename, "cmd": command})
        with open(self.dir / "driver.log", "a") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=os.getcwd())

    def start(self) -> subprocess.Popen:
        overrides = [*self.search.fixed, *(override(k, _value(v)) for k, v in self.trial.params.items())]
        self.trial.set_user_attr("trial_dir", str(self.dir))
        self.trial.set_user_attr("overrides", overrides)
        return self.launch([sys.executable, "-m", "tina.train", "-m", *overrides,
                            override("hydra.sweep.dir", str(self.dir))])

    def watch(self, proc: subprocess.Popen | None) -> None:
        """Report the pruning metric as it is logged; stop the job when the pruner says so; tell the result."""
        prune, reported, since = self.search.space.get("prune") or {}, self.reported, time.time()
        while True:
            ended = proc.poll() is not None if proc else self._ended()
            run = self.run_dir()
            if run is not None and prune:
                for step, value in self._windowed(run, prune["metric"], int(prune.get("window", 1))):
                    if step > reported:
                        self.trial.report(value, step)
                        reported = step
                if not ended and 0 < reported < self._last_step(run) and "pruned_at" not in self.trial.user_attrs \
                        and self.trial.should_prune():  # at the last step there is nothing left to save
                    self.trial.set_user_attr("pruned_at", reported)  # first, so a resumed driver knows
                    self._stop(proc)
            if not ended and run is not None and self._ended_since(run, since):
                # The run has ended: free the slot now rather than when its driver exits. For a pruned
                # job submitit notices the cancellation only at its next sacct poll (up to half the job's
                # age later), so that driver, which only waits, is ended; the others are reaped later.
                if proc is not None and "pruned_at" in self.trial.user_attrs and self.search.launcher != "basic":
                    proc.terminate()
                self.search.reap.append(proc)
                ended = True
            if ended:
                break
            time.sleep(POLL_S)
        self._tell()

    @staticmethod
    def _last_step(run: Path) -> float:
        summary = rd.read_summary(run)
        return summary.get("stop_at_step") or summary.get("max_steps") or float("inf")

    @staticmethod
    def _ended_since(run: Path, since: float) -> bool:
        """The run wrote a final status after `since` (a relaunched run still shows its last one)."""
        path = run / rd.SUMMARY
        return path.exists() and path.stat().st_mtime > since and bool(
            (status := status_of(rd.read_summary(run).get("status"))) and status.ended)

    def _windowed(self, run: Path, metric: str, window: int) -> list[tuple[int, float]]:
        """(step, mean of `metric` over its last `window` logged values), from tina.metrics."""
        import pandas as pd

        from tina.metrics import read_metrics

        df = read_metrics(run)
        if metric not in df.columns:
            return []
        values = pd.to_numeric(df[metric], errors="coerce").dropna()
        means = values.rolling(window, min_periods=1).mean()
        return [(int(s), float(v)) for s, v in zip(df.loc[values.index, "step"], means)]

    def _stop(self, proc: subprocess.Popen | None) -> None:
        """SIGTERM to the training process: it finishes the step, saves a checkpoint and ends."""
        # SLURM or local job ids: the folders submitit names after them ("123", or "123_0" in an array)
        jobs = sorted((p.name for p in (self.dir / ".submitit").glob("*") if p.is_dir()), key=lambda n: [int(x) for x in n.split("_") if x.isdigit()])
        if self.search.launcher == "slurm" and jobs:
            subprocess.run(["scancel", jobs[-1].split("_")[0]], capture_output=True, timeout=30)
        elif self.search.launcher == "local" and jobs:
            try:
                os.kill(int(jobs[-1].split("_")[0]), signal.SIGTERM)  # submitit's local job id is its pid
            except ProcessLookupError:
                pass
        elif proc is not None:
            proc.send_signal(signal.SIGTERM)  # the basic launcher trains in the driver itself

    def _ended(self) -> bool:
        try:
            rows = sweep_status(self.dir)
        except FileNotFoundError:
            return True
        # "not started" may only mean sacct has not heard of a job that just started: wait for more
        return all(finished(r) or needs_rerun(r) and r["status"] != RunStatus.NOT_STARTED for r in rows)

    def _tell(self) -> None:
        import optuna

        study, number = self.search.study, self.trial.number
        run = self.run_dir()
        summary = rd.read_summary(run) if run else {}
        status = status_of(summary.get("status")) or RunStatus.FAILED
        state = optuna.trial.TrialState[status.trial_state]
        value = objective_of(summary, self.search.space["objective"]) if state == optuna.trial.TrialState.COMPLETE else None
        if value is not None:  # finished, even if pruned as its last step ran: it did all its work
            study.tell(number, value)
            outcome = f"finished: {self.search.space['objective']} {value:.4f}"
        elif "pruned_at" in self.trial.user_attrs:
            study.tell(number, state=optuna.trial.TrialState.PRUNED)
            outcome = f"pruned at step {self.trial.user_attrs['pruned_at']}"
        else:  # ended, but no objective to tell (or not ended: the trial driver gave up on it)
            study.tell(number, state=optuna.trial.TrialState.FAIL)
            outcome = f"failed ({summary.get('error') or summary.get('status') or 'no run'}; {self.dir / 'driver.log'})"
        self.search.say(f"trial {number} {outcome}")


class _Orphan:
    """A trial driver started by an earlier search driver, still alive: polled like a Popen."""

    def __init__(self, pid: int):
        self.pid = pid

    @classmethod
    def find(cls, driver: dict | None) -> "_Orphan | None":
        """The live process running ``driver["cmd"]`` on this host (recorded before it was started,
        so a search driver killed right after starting it still finds it)."""
        if not driver or driver.get("host") != os.uname().nodename:
            return None
        want = [c.encode() for c in driver["cmd"][1:]]
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")[:-1]
            except OSError:
                continue
            if argv[1:] == want and cls(int(proc.name)).poll() is None:
                return cls(int(proc.name))
        return None

    def poll(self) -> int | None:
        try:  # a zombie has ended too (pid 1 in a container may never reap it)
            return 0 if Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z" else None
        except OSError:
            return 0

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(POLL_S)
        return 0


# ----------------------------------------------------------------------------- the search
class Search:
    def __init__(self, sweep: Path, space: dict, fixed: list[str]):
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        from tina.plan import compose_sweep

        self.dir, self.space, self.fixed = sweep, space, fixed
        self.reap: list = []  # trial drivers whose runs ended before they exited
        self._said = threading.Lock()  # trials end in the pool's threads: one progress line at a time
        _, cfg, _ = compose_sweep(fixed, multirun=True)  # bad fixed overrides fail here, before any trial
        target = str(cfg.hydra.launcher.get("_target_", ""))
        self.launcher = "slurm" if target.endswith("SlurmLauncher") else "local" if target.endswith(
            "LocalLauncher") else "basic"
        prune = space.get("prune") or {}
        self.distributions = distributions(space)
        sweep.mkdir(parents=True, exist_ok=True)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.storage = storage = JournalStorage(JournalFileBackend(str(sweep / STUDY)))
        # A resumed driver's sampler must not draw the first trials' values again.
        asked = len(storage.get_all_trials(storage.get_study_id_from_name("tina"))) if storage.get_all_studies() else 0
        seed = None if space.get("seed") is None else int(space["seed"]) + asked
        self.study = optuna.create_study(
            study_name="tina", load_if_exists=True, direction=space.get("direction", "maximize"),
            storage=storage, sampler=optuna.samplers.TPESampler(seed=seed, constant_liar=True),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=int(prune.get("startup_trials", 2)),
                                               n_warmup_steps=int(prune.get("warmup_steps", 0)))
            if prune else optuna.pruners.NopPruner(),
        )

    def _resume(self, trial) -> None:
        """A trial the last driver left RUNNING: wait on its own driver if that outlived ours, tell it
        if it ended, watch it if its job still runs, else relaunch it into its own run directory
        (tina.sweep rerun: it resumes from its checkpoint)."""
        import optuna

        trial_id = self.storage.get_trial_id_from_study_id_trial_number(  # public storage API, not trial._trial_id
            self.storage.get_study_id_from_name("tina"), trial.number)
        t = Trial(self, optuna.trial.Trial(self.study, trial_id))
        t.reported = max(trial.intermediate_values, default=0)
        if "pruned_at" in trial.user_attrs:
            t._stop(None)  # the last driver may have died between deciding and stopping
            return t._tell()
        driver = _Orphan.find(trial.user_attrs.get("driver"))
        if driver is not None:
            return t.watch(driver)
        try:
            rows = sweep_status(t.dir)
        except FileNotFoundError:
            rows = []
        if rows and all(finished(r) for r in rows):
            return t._tell()
        if rows and not any(needs_rerun(r) for r in rows):
            return t.watch(None)  # its job outlived both drivers and is still going
        t.watch(t.launch([sys.executable, "-m", "tina.sweep", "rerun", str(t.dir)]) if rows else t.start())

    def run(self, trials: int, parallel: int, synchronous: bool = False) -> None:
        """Keep `parallel` trials going until `trials` have been asked; with `synchronous`, start the
        next batch of `parallel` only when the whole batch has ended (the Hydra plugin's way, for comparison)."""
        import optuna

        with ThreadPoolExecutor(max_workers=parallel) as pool:
            running = {pool.submit(self._resume, t) for t in self.study.get_trials(
                deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))}
            while True:
                room = parallel - len(running) if not synchronous or not running else 0
                for _ in range(max(0, min(room, trials - len(self.study.trials)))):
                    trial = self.study.ask(self.distributions)
                    running.add(pool.submit(self._one, trial))
                if not running:
                    for proc in self.reap:
                        if proc is not None:
                            proc.wait()
                    return
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    f.result()

    def _one(self, trial) -> None:
        t = Trial(self, trial)
        proc = t.start()
        self.say(f"trial {trial.number} started: " + " ".join(f"{k}={_value(v)}" for k, v in trial.params.items()))
        t.watch(proc)

    def say(self, event: str) -> None:
        """One progress line: the event, the trials started, ended by state, and the best so far."""
        import optuna

        with self._said:
            trials = self.study.get_trials(deepcopy=False)
            counts = {state: sum(t.state == state for t in trials) for state in optuna.trial.TrialState}
            done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
            best = (max if self.study.direction == optuna.study.StudyDirection.MAXIMIZE else min)(
                done, key=lambda t: t.value) if done else None
            print(f"{time.strftime('%H:%M:%S')} {event}  [{len(trials)} started, {counts[optuna.trial.TrialState.RUNNING]} "
                  f"running, {counts[optuna.trial.TrialState.COMPLETE]} finished, {counts[optuna.trial.TrialState.PRUNED]} "
                  f"pruned, {counts[optuna.trial.TrialState.FAIL]} failed"
                  + (f"; best so far: trial {best.number} {best.value:.4f}]" if best else "]"), flush=True)


def _default_dir() -> Path:
    return Path("multirun") / time.strftime("%Y-%m-%d") / time.strftime("%H-%M-%S-search")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tina.search", description=__doc__.splitlines()[0],
                                 epilog=f"Search spaces: {SPACES_DIR}/*.yaml. Overrides are tina.train's.")
    ap.add_argument("space", nargs="?", help="a search space in sweeps/search/ (not with --resume)")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--trials", type=int, help="trials in all (default: the space's)")
    ap.add_argument("--parallel", type=int, help="trials at once (default: the space's)")
    ap.add_argument("--dir", type=Path, help="the search's sweep directory (default: multirun/DATE/TIME-search)")
    ap.add_argument("--resume", type=Path, metavar="DIR", help="continue the search recorded in DIR")
    ap.add_argument("--synchronous", action="store_true", help="batch by batch, as hydra-optuna-sweeper")
    args = ap.parse_intermixed_args(argv)
    try:
        if args.resume:
            if args.space or args.overrides:
                raise ConfigError("--resume DIR continues DIR's recorded search: give no space or overrides")
            if not (args.resume / RECORD).exists():
                raise ConfigError(f"--resume: {args.resume / RECORD} not found: not a tina.search directory")
            record = yaml.safe_load((args.resume / RECORD).read_text())
            sweep, space, fixed = args.resume, record["space"], record["fixed"]
        else:
            if not args.space:
                raise ConfigError("name a search space (sweeps/search/NAME.yaml) or --resume DIR")
            check_override_keys(args.overrides)
            space, fixed = load_space(args.space, args.overrides)
            for key in ("trials", "parallel"):
                if getattr(args, key) is not None:
                    space[key] = getattr(args, key)
            sweep = args.dir or _default_dir()
            if (sweep / RECORD).exists():
                raise ConfigError(f"--dir: {sweep} already holds a search; continue it with --resume {sweep}")
        trials, parallel = int(space.get("trials", 8)), int(space.get("parallel", 2))
        if trials < 1 or parallel < 1:
            raise ConfigError(f"trials and parallel must be >= 1, got {trials} and {parallel}")
        search = Search(sweep, space, fixed)
    except (ConfigError, HydraException) as e:  # Hydra's: a bad override or range syntax, an unknown group option
        print(f"tina.search: {e}", file=sys.stderr)
        return 2
    if not (sweep / RECORD).exists():
        (sweep / RECORD).write_text(yaml.safe_dump({"space": space, "fixed": fixed}, sort_keys=False))
    print(f"search in {sweep}: {trials} trials, {parallel} at once, {search.launcher} launcher", flush=True)
    search.run(trials, parallel, synchronous=args.synchronous)
    best = search.study.best_trial if any(t.value is not None for t in search.study.trials) else None
    states = [t.state.name.lower() for t in search.study.trials]
    print(f"{len(states)} trials: " + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))))
    if best:
        print(f"best: trial {best.number} {space['objective']}={best.value:.4f} {best.params}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
