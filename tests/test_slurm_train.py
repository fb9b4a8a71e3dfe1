"""tina.train sweeps on the real one-node SLURM cluster: arrays, failures, cancels, preemption, 2 ranks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import ROOT, TINY, WAIT_S, rows_now, run_sweep, sh, sweep_cmd, wait_for
from tina import run_dir as rd
from tina.status import sweep_status

pytestmark = pytest.mark.slurm


def adapter(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "adapter" / "adapter_model.safetensors")


def test_rank_sweep_runs_as_an_array_and_a_failing_job_costs_no_other(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    # FlashAttention 2 passes every check on the submitting node (it cannot see the compute node) but
    # is refused by the job at its start, before loading anything, on a node without CUDA.
    refusal = "model.attn_implementation=flash_attention_2: needs a CUDA GPU and this machine has none"
    proc = run_sweep(sweep, "train.max_steps=4", "lora.rank=4,8", "model.attn_implementation=sdpa,flash_attention_2")
    assert proc.returncode != 0 and refusal in proc.stdout + proc.stderr  # the outcome names it

    rows = {r["run_dir"].rsplit("/", 1)[1]: r for r in sweep_status(sweep)}
    assert len(rows) == 4
    good = {k: r for k, r in rows.items() if "attn_implementation-sdpa" in k}
    bad = {k: r for k, r in rows.items() if "attn_implementation-flash_attention_2" in k}
    assert [r["status"] for r in good.values()] == ["completed"] * 2 and all(r["steps"] == 4 for r in good.values())
    for r in bad.values():
        # Judged by the job's own result: SLURM calls it COMPLETED (Hydra caught the exception).
        assert r["status"] == "failed" and refusal in r["error"]
        assert "heldout_base" not in json.loads((Path(r["run_dir"]) / "summary.json").read_text())  # nothing loaded
        assert r["slurm_state"] == "COMPLETED"
    array_ids = {r["slurm_job"].split("_")[0] for r in rows.values()}
    assert len(array_ids) == 1 and all("_" in r["slurm_job"] for r in rows.values()), "one job array"


def test_a_bad_value_refuses_the_whole_sweep_before_submitting(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_sweep(sweep, "lora.rank=4,0")
    assert proc.returncode != 0 and "lora.rank: must be" in proc.stderr
    assert not (sweep / ".submitit").exists()
    proc = run_sweep(sweep, "hydra.launcher.timeout_min=5", "lora.rank=4")
    assert proc.returncode != 0 and "hydra.launcher.timeout_min" in proc.stderr
    assert not (sweep / ".submitit").exists()


def test_cancelled_job_costs_no_other_and_submit_and_exit(cluster, tmp_path):
    """The driver is killed right after submitting (the user logged out); jobs go on; status tells all."""
    sweep = tmp_path / "sweep"
    driver = subprocess.Popen(sweep_cmd(sweep, "train.max_steps=40", "lora.rank=4,8"), cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: len([p for p in (sweep / ".submitit").glob("*_*") if p.is_dir()]) == 2, "submission")
    driver.kill()
    driver.wait()

    def running() -> bool:
        rows = rows_now(sweep)
        return len(rows) == 2 and all(r["steps"] and r["status"] == "running" for r in rows)

    wait_for(running, "both jobs training")
    victim = next(r for r in sweep_status(sweep) if r["num"] == 0)
    sh("scancel", victim["slurm_job"])
    wait_for(lambda: all(r["status"] not in ("running", "not started", "pending") for r in sweep_status(sweep)),
             "both jobs to end")
    rows = {r["num"]: r for r in sweep_status(sweep)}
    assert rows[0]["status"] in ("interrupted", "died (cancelled)") and rows[0]["slurm_state"] == "CANCELLED"
    assert rows[1]["status"] == "completed" and rows[1]["steps"] == 40
    out = subprocess.run([sys.executable, "-m", "tina.status", str(sweep)], capture_output=True, text=True,
                         cwd=ROOT, timeout=60)
    assert out.returncode == 1 and "completed" in out.stdout and "CANCELLED" in out.stdout


def test_two_process_config_is_submitted_as_two_tasks_and_trains_with_gloo(cluster, tmp_path):
    """The launcher asks SLURM for what the config needs: compute.num_processes=2 -> 2 tasks, 2 ranks."""
    sweep = tmp_path / "sweep"
    proc = run_sweep(sweep, "train.max_steps=3", "compute.num_processes=2", "lora.rank=4")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (row,) = sweep_status(sweep)
    job = sh("scontrol", "show", "job", "-o", row["slurm_job"]).stdout  # kept MinJobAge=300 s after the end
    assert "NumTasks=2 " in job, job
    summary = json.loads((Path(row["run_dir"]) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 3 and summary["world_size"] == 2


def test_tasks_per_node_that_disagrees_with_the_config_is_refused_before_submitting(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_sweep(sweep, "compute.num_processes=2", "hydra.launcher.tasks_per_node=1", "lora.rank=4")
    assert proc.returncode != 0 and not sweep.exists()
    (line,) = proc.stderr.strip().splitlines()
    assert "hydra.launcher.tasks_per_node=1 but compute.num_processes=2" in line


def _attempts(run: Path | None) -> list[dict]:
    try:
        return json.loads((run / "summary.json").read_text()).get("attempts") or [] if run else []
    except (OSError, ValueError):
        return []  # not written yet, or being replaced


def test_a_job_requeued_twice_records_three_attempts_and_matches_an_uninterrupted_run(cluster, tmp_path):
    """`scontrol requeue` (SIGTERM, then SLURM starts the job again), then USR2 (what SLURM sends
    before preempting; submitit requeues): each attempt resumes where the one before stopped, and
    the adapter is the one an uninterrupted run trains."""
    steps = ["train.max_steps=24", "lora.rank=4"]
    sweep = tmp_path / "sweep"
    driver = subprocess.Popen(sweep_cmd(sweep, *steps, "hydra.launcher.name=tina-edges-requeue"),
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: any(r["steps"] and r["steps"] >= 6 for r in rows_now(sweep)), "step 6", proc=driver)
    job = sweep_status(sweep)[0]
    run = Path(job["run_dir"])
    assert sh("scontrol", "requeue", job["slurm_job"]).returncode == 0
    wait_for(lambda: len(_attempts(run)) == 2 and _attempts(run)[1]["resumed_from"] is not None
             and rd.last_logged_step(run) >= _attempts(run)[1]["resumed_from"] + 3, "the second attempt's steps")
    assert sh("scancel", "--signal=USR2", job["slurm_job"]).returncode == 0
    out, _ = driver.communicate(timeout=WAIT_S)
    assert driver.returncode == 0, out[-3000:]

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 24
    attempts = summary["attempts"]
    assert [a["end"] for a in attempts] == ["requeued", "preempted", "completed"], attempts
    # each resumed exactly where the one before stopped (it saved a checkpoint after the step in flight)
    assert [a["resumed_from"] for a in attempts] == [None, attempts[0]["steps"], attempts[1]["steps"]], attempts
    assert 6 <= attempts[0]["steps"] < attempts[1]["steps"] < 24, attempts
    assert all(a["slurm_job"] == job["slurm_job"] and a["wall_seconds"] > 0 for a in attempts)
    assert summary["wall_seconds"] == pytest.approx(sum(a["wall_seconds"] for a in attempts), abs=0.01)  # the cost's
    steps_logged = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps_logged == list(range(1, 25))
    status = subprocess.run([sys.executable, "-m", "tina.status", str(sweep)], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert "24/24 (3 attempts)" in status.stdout, status.stdout
    assert (run / "train.log").read_text().count("resuming from") == 2

    straight = tmp_path / "straight"
    subprocess.run([sys.executable, "-m", "tina.train", f"hydra.run.dir={straight}", *TINY, *steps],
                   check=True, capture_output=True, cwd=ROOT, timeout=WAIT_S)
    a, b = adapter(straight), adapter(run)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-5, msg=key)
