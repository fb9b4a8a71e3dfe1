"""Checks shared by tina's typed configs (training: tina/config.py; evaluation: tina/evaluate/config.py).

Composition (Hydra onto the dataclasses, struct mode) already refuses a misspelt key or a wrong
type; these add what composition cannot: every override key checked with the allowed keys named,
each numeric key against its Range, and each section's cross-field rules (`check()`).
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Iterable

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tina.errors import ConfigError, check_bounds


def validate(cfg: DictConfig) -> Any:
    """Check a composed config and return it as typed objects (its schema's dataclass, e.g.
    TinaConfig); raise ConfigError naming the key on bad input."""
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", None)
        raise ConfigError(f"{key}: {e.msg}" if key and getattr(e, "msg", None) else str(e).splitlines()[0]) from None
    check_bounds(obj)
    obj.check()
    return obj


def check_override_keys(overrides: Iterable[str], schema: type, groups: Iterable[str] = ()) -> None:
    """Refuse `lora.rnk=3` and `+foo=1` naming the allowed keys; Hydra's own message names only the
    bad one, and `+` makes Hydra add a key the schema lacks without a word."""
    groups = set(groups)
    for override in overrides:
        if "=" not in override:
            continue
        raw_key = override.split("=", 1)[0]
        key = raw_key.lstrip("+~")
        if key.startswith("hydra") or "/" in key or key.split("@")[0] in groups:
            continue  # Hydra's own keys and group choices: Hydra lists their options
        if "." not in key and not raw_key.startswith("+"):
            continue  # a plain `name=value` is a group choice or a top-level key: composition checks it
        node: Any = schema
        parts = key.split(".")
        depth = 0
        while depth < len(parts) and dataclasses.is_dataclass(node):
            fields = [f.name for f in dataclasses.fields(node)]
            part = parts[depth]
            if part not in fields:
                where = ".".join(parts[:depth]) or "the config"
                close = difflib.get_close_matches(part, fields, n=1) or _abbreviations(part, fields)
                hint = f" (did you mean {'.'.join(parts[:depth] + close)}?)" if close else ""
                extra = f"; groups: {', '.join(sorted(groups))}" if depth == 0 and groups else ""
                raise ConfigError(f"{key}: unknown key{hint}; {where} has: {', '.join(fields)}{extra}")
            node = typing.get_type_hints(node)[part]
            depth += 1


def _abbreviations(name: str, fields: list[str]) -> list[str]:
    """`learning_rate` for `lr` and back: spelling distance misses a name and its initials."""
    def initials(word: str) -> str:
        return "".join(w[0] for w in word.split("_") if w)

    return [f for f in fields if "_" in name + f and (initials(name) == f or initials(f) == name)][:1]


def composition_error(e: Exception) -> str:
    """Hydra's composition error as one or two lines: the override and what is allowed."""
    options = getattr(e, "options", None)
    missing = getattr(e, "missing_cfg_file", None)
    if missing and options:
        group, _, choice = str(missing).rpartition("/")
        return f"{group}={choice}: no such option; {group} has: {', '.join(options)}"
    lines = [line.strip() for line in str(e).splitlines() if line.strip() and not line.startswith("See https")]
    cause = e.__cause__
    if cause is not None:  # OmegaConf's reason: which key, which value, which type
        lines[1:] = [line.strip() for line in str(getattr(cause, "msg", cause)).splitlines()[:1]]
    return ": ".join(lines[:2]) or type(e).__name__
