"""Overrides tina writes from data (a sweep's path, a recorded or sampled value): the one place they
are spelled, by Hydra's own rules, so that Hydra reads back exactly the value they came from.

Hydra's grammar reads `,` as a sweep, `()[]{}` as functions, lists and dicts, quotes as strings,
`=` and `:` as syntax, `${...}` as an interpolation, and refuses letters outside ASCII unless they
are quoted. A value that Hydra reads back unchanged when bare is written bare (`lora.rank=8`, a
plain path); any other string is single-quoted by Hydra's QuotedString, with `${` escaped so that
OmegaConf takes it literally.
"""

from __future__ import annotations

import math
import shlex
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Quote, QuotedString

_PARSER = OverridesParser.create()


def parsed(text: str) -> Any:
    """The value Hydra's parser gives the override `text` (its right-hand side, as a job would see it)."""
    return _PARSER.parse_override(text).value()


def quote(value: Any) -> str:
    """`value` as the right-hand side of an override that Hydra parses back to `value`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if value != value else ("inf" if value > 0 else "-inf"))
    text = str(value)
    try:
        if text and parsed(f"k={text}") == text and "$" not in text and "\\" not in text:
            return text
    except Exception:  # Hydra's grammar refuses it bare: quote it
        pass
    return QuotedString(text=text.replace("${", "\\${"), quote=Quote.single).with_quotes()


def override(key: str, value: Any) -> str:
    """`key=value`, the value spelled by quote()."""
    return f"{key}={quote(value)}"


def command(*argv: Any) -> str:
    """A command line to print for a user to paste into a shell: each argument quoted for the shell."""
    return shlex.join(str(a) for a in argv)
