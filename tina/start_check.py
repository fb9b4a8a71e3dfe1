"""A single run's checks, on the config Hydra composed for it, before Hydra makes its run directory.

Why a Hydra callback: a bad config must cost nothing (no directory, no log, no model loaded), and
Hydra makes the run directory and opens its log before it calls the task function. `on_run_start`
is Hydra's public hook between composing a run's config and making its directory, so what is
checked is what the job gets: composed by Hydra, validated once here (tina.config.validate_job
keeps the result for the job). A multirun's jobs are checked by tina's sweeper and launchers
(hydra_plugins/tina_launcher), before its sweep directory is made.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from tina import hydra_internal, machine
from tina import run_dir as rd
from tina.config import TinaConfig, schema_defaults, validate_job
from tina.errors import ConfigError


def check(cfg: DictConfig) -> TinaConfig:
    """The typed config of a run about to start (cfg: Hydra's composition, hydra node included), or
    ConfigError: an invalid value, a machine that cannot run it (no GPU, no vLLM, no model), or an
    existing run directory with another config or a live writer. Reads only: a refusal changes nothing."""
    job = copy.deepcopy(cfg)
    with open_dict(job):
        job.pop("hydra", None)
    tc = validate_job(job, checking=True)
    run_dir = Path(tc.train.output_dir)
    if run_dir.is_dir():
        rd.check_config(run_dir, OmegaConf.to_container(job, resolve=True, enum_to_str=True), schema_defaults())
        rd.lock_of(run_dir).check_free()
    machine.check(tc)
    return tc


class StartCheck(Callback):
    """conf/train.yaml's hydra.callbacks.start_check: check() a single run before it starts; a refusal
    is one line on stderr and exit status 1."""

    def on_run_start(self, config: DictConfig, **kwargs) -> None:
        hydra_internal.release()  # composed: from here on, errors are the job's, reported as Hydra reports them
        HydraConfig.instance().set_config(config)  # train.output_dir resolves to hydra.run.dir (Hydra sets it again)
        try:
            check(config)
        except ConfigError as e:
            sys.exit(f"tina: {e}")
