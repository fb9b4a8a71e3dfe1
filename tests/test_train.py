"""Real TRL GRPO training runs on the embedded tiny model (a few steps each, on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.helpers import ROOT, TINY, fall_begins, metrics, train
from tina.phase import FORMAT_KEY, detect
from tina.toy import rows as toy_rows


def adapter(path: Path) -> dict[str, torch.Tensor]:
    return load_file(path / "adapter_model.safetensors")


def test_short_run_writes_metrics_checkpoints_adapter_and_summary(tmp_path):
    run = tmp_path / "run"
    proc = train(run, "train.max_steps=8", "lora.rank=8")
    assert "config" in proc.stdout and "lora" in proc.stdout  # the config tree was printed

    rows = metrics(run)
    assert [r["step"] for r in rows] == list(range(1, 9))
    for key in ["loss", "reward", "reward_std", "learning_rate", "completions/mean_length",
                "rewards/format_reward/mean", "rewards/accuracy_reward/mean", "kl"]:
        assert all(key in r for r in rows), key

    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 8
    assert summary["device"]["type"] == "cpu" and summary["versions"]["trl"].startswith("1.16")
    assert summary["saved_steps"] == [4, 8] and summary["wall_seconds"] > 0
    assert 0 < summary["trainable_params"] < summary["num_params"]
    assert {"format", "accuracy"} <= set(summary["heldout_base"]) and "heldout_final" in summary

    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["lora"] == {**config["lora"], "rank": 8, "alpha": 32}  # resolved, not ${mul:...}

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(config["model"]["name_or_path"])
    model = PeftModel.from_pretrained(base, run / "adapter")
    assert model.peft_config["default"].r == 8
    assert any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter(run / "adapter").items())


def test_stop_at_step_stops_early_and_a_rerun_continues_to_the_horizon(tmp_path):
    run = tmp_path / "run"
    train(run, "train.max_steps=8", "train.stop_at_step=4")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 4 and summary["max_steps"] == 8
    lr4 = metrics(run)[-1]["learning_rate"]

    train(run, "train.max_steps=8")  # stop_at_step may change on resume; the schedule may not
    assert [r["step"] for r in metrics(run)] == list(range(1, 9))
    assert metrics(run)[3]["learning_rate"] == lr4

    proc = train(run, "train.max_steps=8", "optim.lr=5e-4", check=False)
    assert proc.returncode != 0 and "optim.lr" in proc.stdout + proc.stderr
    assert [r["step"] for r in metrics(run)] == list(range(1, 9)), "a refused rerun must not touch the run"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_multirun_where_one_job_fails_at_run_time_costs_no_other(tmp_path):
    """Every job passes the pre-run checks; one fails on its data (a row without a gold answer)."""
    good = _jsonl(tmp_path / "good.jsonl", toy_rows("train", 64, 0))
    bad = _jsonl(tmp_path / "bad.jsonl", toy_rows("train", 8, 0) + [{"problem": "1+1"}])
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "tina.train", "-m", "+sweeps=lora_rank", f"hydra.sweep.dir={sweep}", *TINY,
         "train.max_steps=4", "lora.rank=4,8", f"dataset.path={good},{bad}"],
        capture_output=True, text=True, cwd=ROOT, timeout=900,
    )
    assert proc.returncode != 0, "a failed job must make the sweep's outcome visible"
    assert "line 9: field 'solution' is missing" in proc.stdout + proc.stderr
    runs = {tuple(o for o in yaml.safe_load((d / ".hydra" / "overrides.yaml").read_text())
                  if o.startswith(("lora.rank", "dataset.path"))): d for d in sweep.iterdir() if d.is_dir()}
    assert len(runs) == 4  # the named sweep's 5 ranks, narrowed to 2 on the command line, x 2 data sets
    for key, run in runs.items():
        summary = json.loads((run / "summary.json").read_text())
        if f"dataset.path={bad}" in key:
            assert summary["status"] == "failed" and "line 9" in summary["error"]
            assert not (run / "checkpoints").exists()
        else:
            assert summary["status"] == "completed" and summary["steps"] == 4
            assert (run / "adapter" / "adapter_model.safetensors").exists()


def test_a_bad_value_refuses_the_whole_sweep_before_any_job_runs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run([sys.executable, "-m", "tina.train", "-m", f"hydra.sweep.dir={sweep}", *TINY,
                           "train.max_steps=2", "lora.rank=4,0"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode != 0 and "lora.rank" in proc.stderr and "Traceback" not in proc.stderr
    assert not sweep.exists(), "nothing ran, nothing was made"


def test_a_crash_during_training_is_recorded_in_the_summary(tmp_path):
    run = tmp_path / "run"
    (tmp_path / "not_a_model").mkdir()  # passes the config checks, fails when the tokenizer loads
    proc = train(run, f"model.name_or_path={tmp_path / 'not_a_model'}", check=False)
    assert proc.returncode != 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] and summary["traceback"]


@pytest.mark.skipif(os.environ.get("WANDB_MODE") == "online", reason="needs no network")
def test_wandb_offline_writes_a_local_run(tmp_path):
    run = tmp_path / "run"
    train(run, "train.max_steps=2", "wandb.mode=offline")
    assert list((run / "wandb").glob("offline-run-*"))


def _write_phase_curve(run: Path, steps: int, turn: int) -> None:
    """A metrics file whose format reward peaks and falls, and length dips and rebounds, at `turn`."""
    import numpy as np

    rng = np.random.default_rng(0)
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "metrics.jsonl", "w") as f:
        for s in range(1, steps + 1):
            fmt = min(s, turn) / turn - max(0, s - turn) / turn
            length = 400 - 300 * min(s, turn) / turn + 300 * max(0, s - turn) / turn
            f.write(json.dumps({"step": s, "rewards/format_reward/mean": fmt + rng.normal(0, 0.03),
                                "completions/mean_length": length + rng.normal(0, 10)}) + "\n")


def test_phase_early_stop_stops_a_patience_window_after_the_transition(tmp_path):
    from transformers import TrainerControl, TrainerState

    from tina.callbacks import PhaseEarlyStop

    cb = PhaseEarlyStop(tmp_path, patience=20, every=10)
    state, control = TrainerState(), TrainerControl()
    _write_phase_curve(tmp_path, steps=110, turn=100)  # 10 steps past the turn: too early to stop
    state.global_step = 110
    cb.on_log(None, state, control, logs={})
    assert not control.should_training_stop
    _write_phase_curve(tmp_path, steps=130, turn=100)
    state.global_step = 130
    cb.on_log(None, state, control, logs={})
    assert control.should_training_stop and control.should_save
    assert abs(cb.transition - 100) <= 5


@pytest.mark.slow
def test_early_stop_phase_stops_after_a_real_transition_and_names_the_best_checkpoint(tmp_path):
    """experiment=toy_transition, whose format reward falls at steps ~40-60 (tests/test_transition.py):
    early stopping must find that fall, stop at the first check (every 10 steps) where the detector,
    reading the run so far, puts it `patience` steps back, well before the horizon, and name the last
    checkpoint saved at or before it."""
    run, patience, every = tmp_path / "run", 20, 10
    proc = subprocess.run([sys.executable, "-m", "tina.train", "experiment=toy_transition", f"hydra.run.dir={run}",
                           "train.early_stop=phase", f"train.early_stop_patience={patience}", "train.save_steps=5",
                           "eval.after_training=false"],
                          capture_output=True, text=True, cwd=ROOT, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "stopped_early", s
    phase, horizon = s["phase_step"], s["max_steps"]
    rows = metrics(run)
    fall = fall_begins([r["step"] for r in rows], [r[FORMAT_KEY] for r in rows])
    assert fall is not None and abs(phase - fall["step"]) <= 0.1 * horizon, (phase, fall)
    assert phase + patience <= s["steps"] < horizon and s["steps"] % every == 0, (phase, s["steps"])
    # ... at the first check where the detector, reading the run so far, put a transition `patience` back
    for check in range(every, s["steps"], every):
        (tmp_path / "so_far.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:check]))
        seen = detect(tmp_path / "so_far.jsonl")["step"]
        assert seen is None or check < seen + patience, (check, seen)
    assert rows[-1]["step"] == s["steps"] and s["steps"] in s["saved_steps"]  # the stop was checkpointed
    assert s["best_checkpoint"] == max(x for x in s["saved_steps"] if x <= phase), s
    assert (run / "checkpoints" / f"checkpoint-{s['best_checkpoint']}").is_dir()


def test_evaluation_after_training_in_the_same_job(tmp_path):
    run = tmp_path / "run"
    train(run, "train.max_steps=4", "eval.after_training=true", "eval.checkpoints=all", "eval.seeds=[0]",
          "eval.n_samples=1")
    results = sorted(p.relative_to(run / "eval").as_posix() for p in (run / "eval").glob("*/toy.json"))
    assert results == ["checkpoint-4/toy.json"]
    result = json.loads((run / "eval" / "checkpoint-4" / "toy.json").read_text())
    assert result["benchmark"] == "toy" and 0 <= result["pass@1"] <= 1 and result["step"] == 4

    import analysis

    row = analysis.collect(run).iloc[0]
    assert row["eval/toy"] == result["pass@1"]
