"""tina's Hydra sweeper and launchers: every job of a sweep is checked before any job starts.

A bad value in the last job of a sweep should cost nothing: not the runs before it, not a queue
wait. So the sweeper composes and validates every job's config, and asks the launcher whether it
can run each job as configured, before Hydra makes the sweep directory or anything is launched.
A refused sweep prints one line naming the job and the key, and leaves no directory behind.
`hydra.sweeper.dry_run=true` stops there: every check, nothing launched.

What each launcher checks: the basic one runs every job in this one process, so a job must want
that many processes; the submitit ones (local, SLURM) start `tasks_per_node` processes per job,
which by default follows the job's `compute.num_processes` (as does `gpus_per_node` in the GPU
preset), and a sweep is one job array, so its jobs must all ask for the same resources. Their time
limit must clear submitit's guard band (at <= 10 minutes submitit takes every USR2 for a time-out,
so a preemption would use up a requeue, and with none left, fail the job).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Sequence

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from tina import costmodel, machine
from tina.config import TinaConfig
from tina.errors import ConfigError
from tina.hydra_internal import BasicLauncher as _HydraBasicLauncher
from tina.hydra_internal import BasicSweeper
from tina.plan import job_config
from tina.schema import composition_error

GUARD_BAND_MIN = 10  # submitit.core.job_environment: min(0.8 T, T - 10 min) is "guaranteed"
RESOURCES = ("nodes", "tasks_per_node", "gpus_per_node")  # what every job of one array shares


def _refuse_on_error(check, *args) -> None:
    """Runs check(*args); a ConfigError ends the program with one line (no traceback, nothing made)."""
    try:
        check(*args)
    except ConfigError as e:
        sys.exit(f"tina: {e}; nothing was started")


def _require_gpus(gpus: int | None, processes: int) -> None:
    if not gpus:
        raise ConfigError(
            f"hydra.launcher.gpus_per_node={gpus} but compute.bf16 / compute.use_vllm need a GPU for each of "
            f"compute.num_processes={processes} processes; set hydra.launcher.gpus_per_node={processes} "
            "(hydra/launcher=slurm does), or use compute=cpu"
        )


def _raise(why: str | None) -> None:
    if why:
        raise ConfigError(why)


class _Composed:
    """The config loader of a launch in this process: each job's config is the one check() composed
    and validated (tina.config.validate_job keeps that result for the job), not composed again."""

    def __init__(self, loader, composed: dict) -> None:
        self.loader, self.composed = loader, composed

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        cfg = self.composed.pop(tuple(sweep_overrides), None)
        return cfg if cfg is not None else self.loader.load_sweep_config(master_config, sweep_overrides)


class _Checked:
    """Launcher mixin: check() refuses a sweep that cannot run; launch() runs it unless the sweeper did."""

    checked = False  # set by the Sweeper once it has checked every job of the sweep
    jobs: list = []  # (where, typed config) of each checked job, for where_problem()
    # Jobs run in this process: launch() runs each from its config as check() composed it. Jobs in
    # other processes (submitit) are composed there from their overrides, which are what travels.
    in_process = False
    composed: dict = {}  # overrides -> that job's composed config, from check() to launch()

    def check(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int = 0) -> None:
        """Raise ConfigError naming the first job that cannot run, and why."""
        self.check_launcher()
        estimates, self.jobs, self.composed = [], [], {}
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            where = f"job #{idx} ({' '.join(overrides)})"
            try:
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            except (HydraException, OmegaConfBaseException) as e:
                raise ConfigError(f"{where}: {composition_error(e)}") from None
            if self.in_process:
                self.composed[tuple(overrides)] = cfg
            try:
                tc = job_config(cfg)  # validated as the job will see it; None for other Hydra apps' configs
                if tc is None:
                    continue  # the presets also serve other Hydra apps: their configs are theirs to check
                self.check_job(idx, cfg, tc)
            except ConfigError as e:
                raise ConfigError(f"{where}: {e}") from None
            self.jobs.append((where, tc))
            estimates.append(costmodel.estimate(tc, [], overrides, idx))
        budget = getattr(self, "budget_usd", None)
        why = costmodel.over_budget(estimates, budget) if budget is not None else None
        if why:
            raise ConfigError(f"hydra.launcher.budget_usd: {why} (python -m tina.plan with the same overrides "
                              "shows each job)")

    def where_problem(self) -> str | None:
        """Why the checked jobs cannot run where this launcher runs them (no GPU, no vLLM, no model),
        or None. Kept apart from check(): a dry run of a GPU sweep on a laptop reports it, not fails."""
        for where, tc in self.jobs:
            why = machine.problem(tc)
            if why:
                return f"{where}: {why}"
        return None

    def check_launcher(self) -> None:
        """Checks of the launcher's own settings."""

    def check_job(self, idx: int, cfg: DictConfig, tc: TinaConfig) -> None:
        """Can this launcher run job `idx` (its composed config, hydra node included, and typed config)?"""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        if not self.checked:
            _refuse_on_error(self.check, job_overrides, initial_job_idx)
            _refuse_on_error(_raise, self.where_problem())
        self.prepare()
        if not self.in_process:
            return super().launch(job_overrides, initial_job_idx)
        context = self.hydra_context
        self.hydra_context = dataclasses.replace(context, config_loader=_Composed(context.config_loader, self.composed))
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            self.hydra_context = context  # each job's config was taken once (a batch at a time: max_batch_size)

    def prepare(self) -> None:
        """Settle what check() found before launching."""

    def describe(self) -> str:
        """What the checked jobs will be given, for the dry run."""
        return ""


class BasicLauncher(_Checked, _HydraBasicLauncher):
    """Hydra's basic launcher: the jobs run one after another in this process."""

    in_process = True

    def check_job(self, idx: int, cfg: DictConfig, tc: TinaConfig) -> None:
        from tina.train import check_world_size

        check_world_size(tc)  # this process is every job's only process


class _Submitit(_Checked):
    """hydra-submitit-launcher: each job is `tasks_per_node` processes, all jobs one array."""

    _resources: tuple[int, dict] | None = None  # the first job's index and its resource request
    # Set by `tina.sweep rerun`: task i of a launch is the sweep's job renumber[i], so it lands in that
    # job's run directory and resumes there (Hydra numbers a launch's jobs from 0).
    renumber: dict[int, int] = {}

    def __init__(self, budget_usd: float | None = None, **params: Any) -> None:
        super().__init__(**params)  # submitit passes every other key on to the executor
        self.budget_usd = budget_usd  # refuse a sweep estimated (tina.costmodel) above this many USD

    def check_launcher(self) -> None:
        timeout = self.params.get("timeout_min")
        if timeout is not None and timeout <= GUARD_BAND_MIN:
            raise ConfigError(
                f"hydra.launcher.timeout_min: {timeout} is within submitit's {GUARD_BAND_MIN}-minute guard band, "
                f"where every SLURM signal counts as a time-out and preempted jobs fail; use > {GUARD_BAND_MIN}"
            )

    def check_job(self, idx: int, cfg: DictConfig, tc: TinaConfig) -> None:
        launcher = cfg.hydra.launcher
        asked = {key: launcher[key] for key in RESOURCES if key in launcher}
        if "gpus_per_node" in asked and asked["gpus_per_node"] is None:  # null: what the job's compute group needs
            asked["gpus_per_node"] = tc.compute.num_processes if machine.cuda_needs(tc) else 0
        nodes, want = asked.get("nodes", 1), tc.compute.num_processes
        for key, per in (("tasks_per_node", "task"), ("gpus_per_node", "GPU")):
            got = asked.get(key) or 0
            if (got or key == "tasks_per_node") and got * nodes != want:
                raise ConfigError(
                    f"hydra.launcher.{key}={got}{f' x {nodes} nodes' if nodes != 1 else ''} but "
                    f"compute.num_processes={want}: tina runs one process per {per}; leave hydra.launcher.{key} "
                    f"unset (it follows compute.num_processes) or make them agree"
                )
        if tc.compute.bf16 or tc.compute.use_vllm:
            _require_gpus(asked.get("gpus_per_node"), want)
        if self._resources is None:
            self._resources = (idx, asked)
        first, theirs = self._resources
        for key in RESOURCES:
            if asked.get(key) != theirs.get(key):
                raise ConfigError(
                    f"hydra.launcher.{key}: this job needs {asked.get(key)} and job #{first} {theirs.get(key)} "
                    "(compute.num_processes), but a sweep is one job array with one resource request; "
                    "sweep these values in separate sweeps"
                )

    def prepare(self) -> None:
        if self._resources is not None:
            self.params.update(self._resources[1])  # resolved in the jobs' configs, not the driver's

    def describe(self) -> str:
        asked = self._resources[1] if self._resources else {}
        return ", ".join(f"{key}={value}" for key, value in asked.items())

    def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state) -> JobReturn:
        """In each task of a job: make it a torch.distributed rank (submitit knows the mapping)."""
        import submitit

        if submitit.JobEnvironment().num_tasks > 1 and "RANK" not in os.environ:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        return super().__call__(sweep_overrides, job_dir_key, self.renumber.get(job_num, job_num), job_id,
                                singleton_state)


class SlurmLauncher(_Submitit, submitit_launcher.SlurmLauncher):
    """The jobs run on the cluster's nodes: from here, check what sinfo knows (the partition, its
    GPUs); each job checks its node (CUDA, vLLM, the model) at its start (tina.train)."""

    def where_problem(self) -> str | None:
        import shutil
        import subprocess

        if not shutil.which("sinfo"):
            return None  # not a SLURM client node: sbatch will say what is wrong
        rows = subprocess.run(["sinfo", "-h", "-o", "%P|%G"], capture_output=True, text=True, timeout=30).stdout
        gres: dict[str, set[str]] = {}
        default = None
        for line in rows.split():
            name, _, g = line.partition("|")
            if name.endswith("*"):
                name = default = name[:-1]
            gres.setdefault(name, set()).add(g)
        partition = self.params.get("partition") or default
        if partition is None or not gres:
            return None
        if partition not in gres:
            return (f"hydra.launcher.partition={partition}: no such partition on this cluster; "
                    f"sinfo lists: {', '.join(sorted(gres))}")
        gpus = (self._resources or (0, {}))[1].get("gpus_per_node") or 0
        if gpus and not any("gpu" in g for g in gres[partition]):
            with_gpus = sorted(p for p, gs in gres.items() if any("gpu" in g for g in gs))
            where = f"one with GPUs: {', '.join(with_gpus)}" if with_gpus else "none on this cluster has GPUs"
            return (f"hydra.launcher.gpus_per_node={gpus}: partition {partition} has no GPUs (sinfo gres: "
                    f"{', '.join(sorted(gres[partition]))}); set hydra.launcher.partition ({where}), or use compute=cpu")
        return None


class LocalLauncher(_Submitit, submitit_launcher.LocalLauncher):
    pass


class Sweeper(BasicSweeper):
    """Hydra's basic sweeper, checking every job with the launcher before the first is launched."""

    def __init__(self, max_batch_size: int | None = None, params: dict | None = None, dry_run: bool = False):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.dry_run = dry_run

    def sweep(self, arguments: list[str]) -> Any:
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides(self._parse_config() + list(arguments))
        jobs = [job for batch in self.split_arguments(overrides, None) for job in batch]
        launcher = self.launcher
        if not isinstance(launcher, _Checked):  # another plugin's launcher: check the configs alone
            launcher = _Checked()
            launcher.hydra_context, launcher.config = self.hydra_context, self.config
        _refuse_on_error(launcher.check, jobs)
        where = launcher.where_problem()
        if self.dry_run:
            what = launcher.describe()
            print(f"tina: dry run: all {len(jobs)} job(s) pass every check{f' ({what})' if what else ''}; "
                  "nothing was started")
            if where:
                print(f"tina: but not where they would run: {where}")
            return []
        _refuse_on_error(_raise, where)
        launcher.checked = True
        return super().sweep(arguments)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Hydra composes each job of a batch here, to refuse it early; sweep() has composed and
        checked every job already, before this is called."""
