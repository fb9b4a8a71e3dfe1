"""tina's launchers: hydra-submitit-launcher, with the checks a queue makes expensive to skip.

On a cluster a bad sweep is found out hours late: after the queue wait, one job at a time. So
before anything is submitted, every job's config is composed and validated (a bad value refuses
the whole sweep, naming the job and the key), and the time limit is checked against submitit's
guard band (at <= 10 minutes submitit takes every USR2 for a time-out, so a preemption would use up
a requeue, and with no requeues left, fail the job).
"""

from __future__ import annotations

import copy

from typing import Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from omegaconf import OmegaConf, open_dict
from hydra_plugins.hydra_submitit_launcher import submitit_launcher

from tina.config import ConfigError, TinaConfig, validate

GUARD_BAND_MIN = 10  # submitit.core.job_environment: min(0.8 T, T - 10 min) is "guaranteed"


class _Checked:
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        timeout = self.params.get("timeout_min")
        if timeout is not None and timeout <= GUARD_BAND_MIN:
            raise ConfigError(
                f"hydra.launcher.timeout_min: {timeout} is within submitit's {GUARD_BAND_MIN}-minute guard band, "
                f"where every SLURM signal counts as a time-out and preempted jobs fail; use > {GUARD_BAND_MIN}"
            )
        hydra_config = HydraConfig.instance()
        driver_cfg = hydra_config.cfg
        try:
            for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
                cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
                if OmegaConf.get_type(cfg) is not TinaConfig:
                    continue  # the presets also serve other Hydra apps: their configs are theirs to check
                hydra_config.set_config(cfg)  # so ${hydra:...} in the job's config resolves as in the job
                job_cfg = copy.deepcopy(cfg)
                with open_dict(job_cfg):
                    del job_cfg["hydra"]  # the task function gets the config without it, too
                job_cfg.train.output_dir = "set-when-the-job-starts"  # Hydra makes the run dir in the job
                try:
                    validate(job_cfg)
                except ConfigError as e:
                    raise ConfigError(f"job #{idx} ({' '.join(overrides)}): {e}; nothing was submitted") from None
        finally:
            hydra_config.cfg = driver_cfg
        return super().launch(job_overrides, initial_job_idx)


class SlurmLauncher(_Checked, submitit_launcher.SlurmLauncher):
    pass


class LocalLauncher(_Checked, submitit_launcher.LocalLauncher):
    pass
