"""tina's launchers: hydra-submitit-launcher, with the checks a queue makes expensive to skip.

On a cluster a bad sweep is found out hours late: after the queue wait, one job at a time. So
before anything is submitted, every job's config is composed and validated (a bad value refuses
the whole sweep, naming the job and the key), the time limit is checked against submitit's
guard band (at <= 10 minutes submitit takes every USR2 for a time-out, so a preemption would use up
a requeue, and with no requeues left, fail the job), and with `budget_usd` set, the sweep's
estimated cost (tina.plan's, from the paper's timings) is held to it.
"""

# No `from __future__ import annotations`: Hydra imports plugins outside sys.modules, where dataclasses
# cannot resolve string annotations.

from dataclasses import dataclass
from typing import Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf

from tina import costmodel
from tina.config import ConfigError
from tina.plan import job_config

GUARD_BAND_MIN = 10  # submitit.core.job_environment: min(0.8 T, T - 10 min) is "guaranteed"


@dataclass
class TinaSlurmConf(SlurmQueueConf):
    _target_: str = "hydra_plugins.tina_launcher.tina_launcher.SlurmLauncher"
    # Refuse to submit a sweep whose estimate (python -m tina.plan) exceeds this many USD; null: no limit.
    budget_usd: Optional[float] = None


@dataclass
class TinaLocalConf(LocalQueueConf):
    _target_: str = "hydra_plugins.tina_launcher.tina_launcher.LocalLauncher"
    budget_usd: Optional[float] = None


ConfigStore.instance().store(group="hydra/launcher", name="tina_submitit_slurm", node=TinaSlurmConf, provider="tina")
ConfigStore.instance().store(group="hydra/launcher", name="tina_submitit_local", node=TinaLocalConf, provider="tina")


class _Checked:
    def __init__(self, budget_usd: Optional[float] = None, **params) -> None:
        super().__init__(**params)  # submitit passes every other key on to the executor
        self.budget_usd = budget_usd
        # Set by `tina.sweep rerun`: task i of this launch is the sweep's job renumber[i], so it lands
        # in that job's run directory and resumes there (Hydra numbers a launch's jobs from 0).
        self.renumber: dict[int, int] = {}

    def __call__(self, sweep_overrides, job_dir_key, job_num, job_id, singleton_state):
        return super().__call__(sweep_overrides, job_dir_key, self.renumber.get(job_num, job_num), job_id,
                                singleton_state)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        timeout = self.params.get("timeout_min")
        if timeout is not None and timeout <= GUARD_BAND_MIN:
            raise ConfigError(
                f"hydra.launcher.timeout_min: {timeout} is within submitit's {GUARD_BAND_MIN}-minute guard band, "
                f"where every SLURM signal counts as a time-out and preempted jobs fail; use > {GUARD_BAND_MIN}"
            )
        jobs = []
        for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            try:
                tc = job_config(cfg)
            except ConfigError as e:
                raise ConfigError(f"job #{idx} ({' '.join(overrides)}): {e}; nothing was submitted") from None
            if tc is not None:
                jobs.append(costmodel.estimate(tc, [], overrides, idx))
        if self.budget_usd is not None:
            why = costmodel.over_budget(jobs, self.budget_usd)
            if why:
                raise ConfigError(f"hydra.launcher.budget_usd: {why} (python -m tina.plan with the same "
                                  f"overrides shows each job); nothing was submitted")
        return super().launch(job_overrides, initial_job_idx)


class SlurmLauncher(_Checked, submitit_launcher.SlurmLauncher):
    pass


class LocalLauncher(_Checked, submitit_launcher.LocalLauncher):
    pass
