"""Shared fixtures: the one-node SLURM cluster (scripts/slurm-local.sh) and lighteval's venv."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import sh

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm-local.sh"
LIGHTEVAL_ENV = ROOT / "scripts" / "lighteval-env.sh"


def pytest_xdist_auto_num_workers(config) -> int:
    """`-n auto` (pyproject's addopts): one worker per CPU, at most 4. Many tests are training
    subprocesses on one thread or waits on SLURM, so 2 workers on 2 cores took the suite from 1612 s
    to ~1000 s; more than 4 would add memory (the real-shape test alone peaks at 10.5 GiB), not speed."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1  # macOS has no affinity
    return max(1, min(cpus, 4))


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    """Workers take whole groups (`--dist loadgroup`): every test on the SLURM cluster is one group,
    because they count the cluster's queue and jobs; any other test goes with its module (module
    fixtures are built once).

    On a fresh machine, provisioning (apt for SLURM, pip for lighteval: minutes, mostly waiting on the
    network) starts in the background as soon as a selected test needs it, and overlaps the CPU-bound
    tests before it. Both scripts hold a lock while they provision, so the fixtures below, which call
    them again, wait for that run and find the service ready (or report its error themselves)."""
    needed: set[str] = set()
    for item in items:
        names = getattr(item, "fixturenames", ())
        item.add_marker(pytest.mark.xdist_group("slurm" if "cluster" in names else item.nodeid.split("::")[0]))
        needed.update(names)
    background = []
    if "cluster" in needed and os.geteuid() == 0:
        background.append(["bash", str(SCRIPT), "up"])
    if "lighteval_python" in needed and not os.environ.get("TINA_LIGHTEVAL_PYTHON"):
        background.append(["bash", str(LIGHTEVAL_ENV)])
    for cmd in background:
        subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)


@pytest.fixture(scope="session")
def cluster():
    """scripts/slurm-local.sh up: installs (apt) and starts the cluster if needed."""
    if sh("bash", str(SCRIPT), "status").returncode != 0:
        reason = None
        if os.geteuid() != 0:
            reason = "the SLURM cluster is not up and starting it needs root (scripts/slurm-local.sh up)"
        elif not Path("/usr/sbin/slurmctld").exists() and not shutil.which("apt-get"):
            reason = "SLURM is not installed and apt-get is unavailable to install it"
        if reason:
            if os.environ.get("CI"):
                pytest.fail(f"CI must run the SLURM tests: {reason}")
            pytest.skip(reason)
    up = sh("bash", str(SCRIPT), "up", timeout=900)
    assert up.returncode == 0, f"scripts/slurm-local.sh up failed:\n{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
    return up.stdout.strip().splitlines()[-1]



@pytest.fixture(scope="session")
def lighteval_python() -> str:
    """lighteval's own venv (scripts/lighteval-env.sh: installed on first use, ~4-5 min, then ~0.1 s);
    TINA_LIGHTEVAL_PYTHON names one made some other way."""
    from tests.helpers import provisioned

    return os.environ.get("TINA_LIGHTEVAL_PYTHON") or provisioned(
        ["bash", str(LIGHTEVAL_ENV)], "lighteval's environment")
