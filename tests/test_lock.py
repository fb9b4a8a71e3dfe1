"""The lock (constraints.txt) and pyproject.toml agree: every dependency is pinned, inside its range."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            pins.setdefault(re.sub(r"[-_.]+", "-", m.group(1)).lower(), m.group(2))
    return pins


def _requirements(extras=("dev",)) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in extras:
        reqs += project["optional-dependencies"][extra]
    return [Requirement(r) for r in reqs]


def test_every_dependency_is_pinned_within_its_range():
    pins = _pins()
    problems = []
    for req in _requirements():
        name = re.sub(r"[-_.]+", "-", req.name).lower()
        if name not in pins:
            problems.append(f"{req.name}: in pyproject.toml, not in constraints.txt")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req.name}: locked {pins[name]} is outside pyproject's {req.specifier}")
    assert not problems, "constraints.txt disagrees with pyproject.toml; run scripts/lock.sh:\n" + "\n".join(problems)


def test_lock_holds_the_embedded_models_transformers():
    built_with = json.loads((ROOT / "tina/embedded/tiny/config.json").read_text())["transformers_version"]
    assert _pins()["transformers"] == built_with
