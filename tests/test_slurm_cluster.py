"""The one-node SLURM cluster of scripts/slurm-local.sh, driven for real through submitit (no mocks).

The cluster is brought up by the script (a few seconds the first time, well under a second once up).
Skipped only where it cannot be started here (not root, no apt); under CI=true that is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit
from submitit.core.utils import FailedJobError

from tests.helpers import sh

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "slurm-local.sh"
WAIT_S = 120  # bound on any one job; they take ~2-5 s on an idle machine

pytestmark = pytest.mark.slurm

# The jobs unpickle the functions below in a fresh Python that cannot import this test module:
# make cloudpickle (which submitit uses) ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# --------------------------------------------------------------------------- job functions
def multiply(a: int, b: int) -> dict:
    return {"product": a * b, "job_id": os.environ.get("SLURM_JOB_ID"), "node": os.environ.get("SLURMD_NODENAME")}


def double_or_raise(x: int) -> int:
    if x < 0:
        raise ValueError(f"negative input {x}")
    return 2 * x


class Preemptible:
    """Waits to be preempted on its first attempt; submitit requeues it through `checkpoint`."""

    def __init__(self, attempts_file: str):
        self.attempts_file = attempts_file

    def __call__(self) -> int:
        with open(self.attempts_file, "a") as f:
            f.write(os.environ.get("SLURM_RESTART_COUNT", "0") + "\n")
        attempts = len(Path(self.attempts_file).read_text().split())
        if attempts == 1:
            time.sleep(WAIT_S)  # the test sends USR2 meanwhile
        return attempts

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self)


# --------------------------------------------------------------------------- helpers
def executor(folder: Path) -> submitit.AutoExecutor:
    """What hydra/launcher=slurm_local builds (max_num_timeout as in the preset)."""
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster="slurm", slurm_max_num_timeout=3)
    # timeout_min > 10: below that submitit counts every USR2 as a timeout, not a preemption.
    ex.update_parameters(timeout_min=15, slurm_partition="debug", cpus_per_task=1, mem_gb=1)
    return ex


def wait(jobs: list, timeout: float = WAIT_S) -> None:
    """Bounded wait; on time-out cancel the jobs and fail with what SLURM knows."""
    deadline = time.time() + timeout
    while not all(j.done() for j in jobs):
        if time.time() > deadline:
            ids = sorted({j.job_id.split("_")[0] for j in jobs})
            info = sh("squeue", "-j", ",".join(ids)).stdout + sh("sacct", "-j", ",".join(ids)).stdout
            logs = "".join(j.stderr() or "" for j in jobs)[-2000:]
            sh("scancel", *ids)
            pytest.fail(f"jobs {ids} not done after {timeout} s\n{info}\n{logs}")
        time.sleep(0.5)


def sacct_states(job_id: str, expected: int, timeout: float = 30) -> dict[str, str]:
    """{job id: state} from accounting once `expected` jobs reached a final state (records lag a little)."""
    deadline = time.time() + timeout
    while True:
        out = sh("sacct", "-j", job_id, "-X", "-n", "-P", "-o", "JobID,State").stdout
        states = dict(line.split("|", 1) for line in out.splitlines() if "|" in line)
        final = {k: v for k, v in states.items() if v not in {"PENDING", "RUNNING", "REQUEUED", "COMPLETING"}}
        if len(final) >= expected or time.time() > deadline:
            return states
        time.sleep(0.5)


# --------------------------------------------------------------------------- tests
def test_function_job_runs_and_is_accounted(cluster, tmp_path):
    assert cluster.startswith("slurm-local: UP"), cluster
    job = executor(tmp_path).submit(multiply, 6, 7)
    wait([job])
    result = job.result()
    assert result == {"product": 42, "job_id": job.job_id, "node": "localhost"}
    assert sacct_states(job.job_id, expected=1) == {job.job_id: "COMPLETED"}


def test_failing_array_task_is_reported_failed_and_its_sibling_succeeds(cluster, tmp_path):
    ok, bad = executor(tmp_path).map_array(double_or_raise, [21, -1])
    array_id = ok.job_id.split("_")[0]
    assert (ok.job_id, bad.job_id) == (f"{array_id}_0", f"{array_id}_1")  # one array, two tasks
    wait([ok, bad])
    assert ok.result() == 42
    with pytest.raises(FailedJobError, match="ValueError: negative input -1"):
        bad.result()
    assert sacct_states(array_id, expected=2) == {ok.job_id: "COMPLETED", bad.job_id: "FAILED"}


def test_preempted_job_is_requeued_and_finishes(cluster, tmp_path):
    """USR2 (what SLURM sends before the time limit, or `scancel --signal=USR2`): checkpoint, requeue, rerun."""
    attempts = tmp_path / "attempts"
    job = executor(tmp_path).submit(Preemptible(str(attempts)))
    deadline = time.time() + WAIT_S
    while not attempts.exists():
        assert time.time() < deadline, sh("sacct", "-j", job.job_id).stdout
        time.sleep(0.2)
    assert sh("scancel", "--signal=USR2", job.job_id).returncode == 0
    wait([job])
    assert job.result() == 2
    assert attempts.read_text().split() == ["0", "1"]  # SLURM_RESTART_COUNT of each attempt


HYDRA_APP = '''
import os
from pathlib import Path
import hydra
from hydra.core.hydra_config import HydraConfig

@hydra.main(version_base=None, config_path=None, config_name=None)
def main(cfg):
    out = Path(HydraConfig.get().runtime.output_dir)
    (out / "ran.txt").write_text(f"x={cfg.x} slurm_array={os.environ.get('SLURM_ARRAY_JOB_ID')}")
    return cfg.x

if __name__ == "__main__":
    main()
'''


@pytest.mark.parametrize("launcher", ["slurm_local", "local"])
def test_hydra_sweep_through_the_launcher_presets(launcher, request, tmp_path):
    """conf/hydra/launcher/<launcher>.yaml drives a real two-run Hydra sweep (a tiny app, not training)."""
    if launcher.startswith("slurm"):
        request.getfixturevalue("cluster")
    (tmp_path / "app.py").write_text(HYDRA_APP)
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "app.py", "-m", f"hydra/launcher={launcher}", f"hydra.searchpath=[file://{ROOT}/conf]",
         f"hydra.sweep.dir={sweep}", "+x=1,2"],
        cwd=tmp_path, capture_output=True, text=True, timeout=WAIT_S * 2, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ran = sorted((sweep / str(i) / "ran.txt").read_text() for i in range(2))
    assert [r.split()[0] for r in ran] == ["x=1", "x=2"]
    arrays = {r.split("slurm_array=")[1] for r in ran}
    if launcher == "local":
        assert arrays == {"None"}
    else:
        (array_id,) = arrays  # both runs are tasks of one SLURM job array
        assert sacct_states(array_id, expected=2) == {f"{array_id}_0": "COMPLETED", f"{array_id}_1": "COMPLETED"}
