"""A run started before tina gained a config key resumes after the upgrade (a SLURM requeue after a
`git pull` must not strand a sweep), unless the new key is set away from its default."""

from __future__ import annotations

import copy

import pytest
import yaml

from tina import run_dir as rd
from tina.config import schema_defaults
from tina.errors import RunDirError


def _recorded_before_the_key_existed(tmp_path, config: dict) -> None:
    old = copy.deepcopy(config)
    del old["lora"]["use_dora"], old["algorithm"]["epsilon_high"]  # keys added in a later tina
    (tmp_path / rd.CONFIG).write_text(yaml.safe_dump(old))


def test_a_new_key_at_its_default_is_no_change(tmp_path):
    config = schema_defaults()
    config["train"]["output_dir"] = str(tmp_path)
    _recorded_before_the_key_existed(tmp_path, config)
    rd.check_config(tmp_path, config, schema_defaults())  # accepted
    with pytest.raises(RunDirError, match=r"lora.use_dora"):  # without the schema's word, it is a change
        rd.check_config(tmp_path, config)


def test_a_new_key_set_away_from_its_default_is_refused(tmp_path):
    config = schema_defaults()
    config["train"]["output_dir"] = str(tmp_path)
    _recorded_before_the_key_existed(tmp_path, config)
    config["lora"]["use_dora"] = True
    with pytest.raises(RunDirError, match=r"differs in \['lora.use_dora'\]"):
        rd.check_config(tmp_path, config, schema_defaults())
