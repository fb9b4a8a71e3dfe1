"""The schema is the one home of every key: each numeric key has a range, the group files agree
with the dataclass defaults, and the README's config table lists what conf/ holds."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from tests.helpers import ROOT
from tina.config import TinaConfig
from tina.errors import ConfigError, Range, bounds_of
from tina.evaluate.config import EvaluateConfig

NUMERIC = (int, float)


def _schema_classes(root: type) -> list[type]:
    seen, todo = [], [root]
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.append(cls)
        for f in dataclasses.fields(cls):
            t = typing.get_type_hints(cls)[f.name]
            todo += [a for a in (t, *typing.get_args(t)) if dataclasses.is_dataclass(a)]
    return seen


def _numeric_fields(cls: type) -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        t = hints[f.name]
        args = [a for a in typing.get_args(t) if a is not type(None)] or [t]
        if any(a in NUMERIC for a in args):
            out.append(f.name)
    return out


@pytest.mark.parametrize("root", [TinaConfig, EvaluateConfig], ids=lambda c: c.__name__)
def test_every_numeric_key_has_a_range(root):
    missing = [f"{cls.__name__}.{name}" for cls in _schema_classes(root)
               for name in _numeric_fields(cls) if name not in bounds_of(cls)]
    assert not missing, f"numeric keys without a Range in BOUNDS: {missing}"
    for cls in _schema_classes(root):
        assert set(bounds_of(cls)) <= set(_numeric_fields(cls)), f"{cls.__name__}.BOUNDS names a non-numeric key"


def test_a_range_names_the_key_the_value_and_the_bounds():
    with pytest.raises(ConfigError, match=r"^algorithm.epsilon: must be a number in \(0, 1\], got -0.2$"):
        Range(0, 1, lo_open=True).check("algorithm.epsilon", -0.2)
    with pytest.raises(ConfigError, match=r"integer in \[1, inf\), got 1.5"):
        Range(1, integer=True).check("lora.rank", 1.5)
    for bad in (float("nan"), float("inf"), True, "3"):
        with pytest.raises(ConfigError):
            Range().check("x", bad)


# Group files that restate the schema's defaults (the others are recipes: they change values).
DEFAULT_FILES = {"algorithm/grpo.yaml": "algorithm", "optim/default.yaml": "optim", "lora/default.yaml": "lora"}


@pytest.mark.parametrize("path,section", DEFAULT_FILES.items())
def test_default_group_files_agree_with_the_dataclass_defaults(path, section):
    """The YAML carries the trade-off comments, the dataclass the types: both may hold a default,
    so this proves they hold the same one (editing one alone fails here)."""
    values = yaml.safe_load((ROOT / "conf" / path).read_text())
    defaults = dataclasses.asdict(getattr(TinaConfig(), section))
    for key, value in values.items():
        if isinstance(value, str) and value.startswith("${"):
            continue
        default = defaults[key]
        default = getattr(default, "value", default)
        assert value == default, f"conf/{path}: {key}={value!r} but the dataclass default is {default!r}"


def test_readme_config_table_lists_every_group_and_option():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Config groups"):]
    table = table[:table.index("\n## ", 3)]
    for group in sorted(p for p in (ROOT / "conf").iterdir() if p.is_dir() and p.name not in ("hydra", "experiment")):
        row = next((line for line in table.splitlines() if line.startswith(f"| `{group.name}`")), None)
        assert row is not None, f"README's config table has no row for group {group.name}"
        for option in sorted(p.stem for p in group.glob("*.yaml")):
            assert f"`{option}`" in row, f"README's config table row {group.name} omits option {option}"
