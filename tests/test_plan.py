"""python -m tina.plan against the paper's own costs, a real finished run, and the launchers' budget check."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from analysis.cost import paper_costs
from tests.helpers import sh
from tina import plan

ROOT = Path(__file__).resolve().parents[1]


def plan_json(capsys, *args: str) -> dict:
    assert plan.main([*args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def assert_totals_are_row_sums(p: dict) -> None:
    for total, key in [("total_gpu_hours", "gpu_hours"), ("total_usd", "usd"), ("train_usd", "train_usd"),
                       ("eval_usd", "eval_usd")]:
        assert p[total] == pytest.approx(sum(r[key] for r in p["jobs"]))
    assert p["total_usd"] == pytest.approx(p["train_usd"] + p["eval_usd"])


def test_open_rs2_is_the_papers_figure_carried_to_850_steps(capsys):
    p = plan_json(capsys, "experiment=tina_open_rs2")
    (row,) = p["jobs"]
    assert p["train_usd"] == pytest.approx(8.0 * 850 / 450)  # the evidence: 450 steps for 8 USD
    assert (row["steps"], row["num_gpus"], row["gpu_type"]) == (850, 2, "L40S")
    assert row["evidence"].startswith("paper: Open-RS2")
    assert row["gpu_hours"] == pytest.approx(row["wall_hours"] * 2)
    assert_totals_are_row_sums(p)


EXPERIMENT = {"STILL-3": "still3", "DeepScaleR": "deepscaler", "Open-RS1": "open_rs1", "LIMR": "limr"}


def test_the_readme_says_how_far_off_the_plan_is_on_costs_it_was_not_fitted_on(capsys):
    """The README's figures, to the whole percent it gives them, on the paper's training costs other
    than the one figure the model is fitted on (Open-RS2 at step 450)."""
    text = " ".join((ROOT / "README.md").read_text().split())
    claims = dict(re.findall(r"([\w.-]+) ([+-]\d+)%", text.split("it was not fitted on:")[1].split(".")[0]))
    assert set(claims) == set(EXPERIMENT) and "Open-RS2" not in claims
    p = plan_json(capsys, "-m", "experiment=" + ",".join(f"tina_{e}" for e in EXPERIMENT.values()))
    costs = paper_costs().set_index("item")
    for item, experiment in EXPERIMENT.items():
        (row,) = [r for r in p["jobs"] if f"experiment=tina_{experiment}" in r["overrides"].split()]
        off = 100 * (row["train_usd"] / costs.loc[item, "train_usd"] - 1)
        assert round(off) == int(claims[item]), (item, off, claims[item])


def test_main_sweep_is_table_3(capsys):
    p = plan_json(capsys, "-m", "+sweeps=main")
    assert len(p["jobs"]) == 5 and {r["overrides"].split()[0] for r in p["jobs"]} == {
        f"experiment=tina_{n}" for n in ("still3", "deepscaler", "open_rs1", "open_rs2", "open_rs3")}
    assert_totals_are_row_sums(p)


def test_evaluating_every_checkpoint_costs_what_the_paper_paid(capsys):
    """The paper evaluated all 17 Open-RS2 checkpoints (six benchmarks, one sample) for 17 USD."""
    p = plan_json(capsys, "experiment=tina_open_rs2", "eval=gpu", "eval.after_training=true",
                  "eval.checkpoints=all", "eval.n_samples=1", f"eval.lighteval_python={sys.executable}")
    paper = paper_costs().set_index("item").loc["all checkpoints of Open-RS2", "eval_usd"]
    assert p["eval_usd"] == pytest.approx(paper, rel=0.3)
    assert_totals_are_row_sums(p)


def test_seconds_per_step_from_a_finished_run(tmp_path, capsys):
    """A real run of the tiny model is the evidence for a plan of the same recipe, named in the output."""
    run = tmp_path / "run"
    tiny = ["train.max_steps=3", "train.save_steps=3", "dataset.eval_size=4", "algorithm.max_completion_length=16"]
    proc = subprocess.run([sys.executable, "-m", "tina.train", f"hydra.run.dir={run}", *tiny],
                          capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run / "summary.json").read_text())
    p = plan_json(capsys, "-m", "lora.rank=4,8", *tiny[:1], "algorithm.max_completion_length=16",
                  "--from", str(tmp_path))
    assert [r["evidence"] for r in p["jobs"]] == [str(run)] * 2
    for r in p["jobs"]:
        assert r["seconds_per_step"] == pytest.approx(summary["wall_seconds"] / summary["steps"])
        assert r["wall_hours"] == pytest.approx(r["seconds_per_step"] * 3 / 3600)
        assert (r["num_gpus"], r["gpu_hours"], r["usd"]) == (0, 0.0, 0.0)  # CPU costs nothing
    assert p["total_wall_hours"] == pytest.approx(sum(r["wall_hours"] for r in p["jobs"]))
    # carried to a job generating twice as long: twice the seconds
    p2 = plan_json(capsys, "algorithm.max_completion_length=32", "--from", str(tmp_path))
    assert p2["jobs"][0]["seconds_per_step"] == pytest.approx(2 * p["jobs"][0]["seconds_per_step"])


def test_bad_input_names_the_key(capsys):
    assert plan.main(["lora.rnk=3"]) == 2
    assert "lora.rnk: unknown key (did you mean lora.rank?)" in capsys.readouterr().err
    assert plan.main(["algorithm.num_generations=1"]) == 2
    assert "algorithm.num_generations" in capsys.readouterr().err


def over_budget(tmp_path: Path, launcher: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tina.train", "-m", f"hydra/launcher={launcher}", f"hydra.sweep.dir={tmp_path}",
         "experiment=tina_open_rs2,tina_open_rs3", "hydra.launcher.gpus_per_node=2", "hydra.launcher.budget_usd=20"],
        capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_local_launcher_refuses_an_over_budget_sweep(tmp_path):
    proc = over_budget(tmp_path, "local")
    assert proc.returncode != 0
    assert "hydra.launcher.budget_usd: estimated 30.22 USD for 2 jobs is 10.22 USD over the budget of 20 USD" in proc.stderr
    assert not (tmp_path / ".submitit").exists()


@pytest.mark.slurm
def test_slurm_refuses_an_over_budget_sweep(cluster, tmp_path):
    before = sh("squeue", "-h", "-o", "%i").stdout.split()
    proc = over_budget(tmp_path, "slurm_local")
    assert proc.returncode != 0 and "over the budget of 20 USD" in proc.stderr and "nothing was started" in proc.stderr
    assert not (tmp_path / ".submitit").exists()
    assert not set(sh("squeue", "-h", "-o", "%i").stdout.split()) - set(before)
    assert str(tmp_path) not in sh("sacct", "-X", "-n", "-P", "-o", "WorkDir", "-S", "now-5minutes").stdout


def test_one_epoch_of_a_subset_is_planned_in_steps(capsys):
    """train.max_steps=null trains one epoch: with dataset.max_samples the plan knows how long it is."""
    (row,) = plan_json(capsys, "experiment=tina_limr", "train.max_steps=null", "train.stop_at_step=null",
                       "dataset.max_samples=1000")["jobs"]
    assert row["steps"] == 125 and row["usd"] > 0  # 1000 prompts, 8 a step
    (row,) = plan_json(capsys, "experiment=tina_limr", "train.max_steps=null", "train.stop_at_step=null")["jobs"]
    assert row["steps"] is None  # a hub data set of unknown size: not guessed
    (row,) = plan_json(capsys, "experiment=tina_limr", "dataset.max_samples=1000")["jobs"]
    assert row["steps"] == 180 and any("1.4 epochs of 1000 samples" in n for n in row["notes"])


def test_the_non_distilled_base_is_priced_as_the_paper_model_of_its_shape(capsys):
    (paper,) = plan_json(capsys, "experiment=tina_open_rs2")["jobs"]
    (qwen,) = plan_json(capsys, "experiment=tina_open_rs2", "model=qwen2_5_1_5b_instruct")["jobs"]
    assert qwen["usd"] == pytest.approx(paper["usd"]) and qwen["steps"] == 850
    assert any("the paper's model of the same shape" in n for n in qwen["notes"])
