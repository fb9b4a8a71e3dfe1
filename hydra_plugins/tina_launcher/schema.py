"""The tina launcher presets' schemas: hydra-submitit-launcher's, plus `budget_usd`.

Its own module without `from __future__ import annotations`: Hydra imports plugin modules outside
sys.modules, where dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass
from typing import Optional

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf, SlurmQueueConf


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
