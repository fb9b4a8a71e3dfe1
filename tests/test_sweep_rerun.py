"""python -m tina.sweep rerun on the real one-node SLURM cluster: only what did not finish is relaunched."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import sh
from tests.helpers import ROOT, WAIT_S, rows_now, sweep_cmd, wait_for
from tina import run_dir as rd
from tina.status import sweep_status
from tina.sweep import needs_rerun

pytestmark = pytest.mark.slurm


def tree_hash(run: Path) -> dict[str, str]:
    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("*"))
            if p.is_file()}


def cli(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=WAIT_S)


def test_rerun_brings_a_failed_and_a_never_started_job_to_completed(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    # Two jobs a batch: when the driver dies during the first, the third is never submitted.
    driver = subprocess.Popen(
        sweep_cmd(sweep, "lora.rank=4,8,16", "hydra.sweeper.max_batch_size=2", "train.max_steps=12",
                  "dataset.eval_size=8"),
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def job(num: int) -> dict:
        return next((r for r in rows_now(sweep) if r["num"] == num), {})

    wait_for(lambda: job(1).get("run_dir") and 4 in rd.saved_steps(job(1)["run_dir"]), "job 1's checkpoint-4")
    sh("scancel", "--signal=INT", job(1)["slurm_job"])  # KeyboardInterrupt in the job: interrupted
    wait_for(lambda: job(0).get("status") == "completed", "job 0 to finish")
    wait_for(lambda: job(1).get("slurm_state") not in (None, "RUNNING", "PENDING"), "job 1 to end")
    driver.kill()
    driver.wait()

    rows = {r["num"]: r for r in sweep_status(sweep)}
    assert set(rows) == {0, 1} and rows[1]["status"] == "interrupted" and needs_rerun(rows[1])
    assert "KeyboardInterrupt" in rows[1]["reason"]
    finished = Path(rows[0]["run_dir"])
    before = tree_hash(finished)
    status = cli("tina.status", str(sweep))
    assert status.returncode == 1
    assert status.stdout.strip().splitlines()[-1].endswith(f"python -m tina.sweep rerun {sweep}")

    dry = cli("tina.sweep", "rerun", str(sweep), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    listed = dry.stdout.strip().splitlines()
    assert [line.split()[1] for line in listed] == ["1", "2"]
    assert "resume from step" in listed[0] and "lora.rank=8" in listed[0]
    assert "not started" in listed[1] and "lora.rank=16" in listed[1]
    assert not (sweep / "reruns.json").exists() and {r["num"] for r in sweep_status(sweep)} == {0, 1}

    out = cli("tina.sweep", "rerun", str(sweep))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rows = {r["num"]: r for r in sweep_status(sweep)}
    assert [rows[n]["status"] for n in (0, 1, 2)] == ["completed"] * 3
    assert all(rows[n]["steps"] == 12 for n in (0, 1, 2))
    assert tree_hash(finished) == before, "the finished job was touched"
    resumed = Path(rows[1]["run_dir"])
    assert "resuming from" in (resumed / "train.log").read_text()
    assert [json.loads(line)["step"] for line in (resumed / rd.METRICS).read_text().splitlines()] == list(range(1, 13))
    assert Path(rows[2]["run_dir"]).name.startswith("2_") and rd.read_config(rows[2]["run_dir"])["lora"]["rank"] == 16
    # status maps the rerun array's tasks onto jobs 1 and 2, not 0 and 1
    rerun_array = {rows[1]["slurm_job"].split("_")[0], rows[2]["slurm_job"].split("_")[0]}
    assert len(rerun_array) == 1 and rows[0]["slurm_job"].split("_")[0] not in rerun_array
    wait_for(lambda: [r["slurm_state"] for r in sweep_status(sweep)] == ["COMPLETED"] * 3, "SLURM to agree")
    assert cli("tina.status", str(sweep)).returncode == 0
    again = cli("tina.sweep", "rerun", str(sweep))
    assert again.returncode == 0 and "nothing to rerun" in again.stdout
