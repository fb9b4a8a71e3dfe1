"""analysis.collect (analysis.runs, analysis.row, analysis.evals, analysis.cache): hand-written run
directories for every state a run can be in, read into one row each."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import analysis
from tina.phase import FORMAT_KEY, LENGTH_KEY
from analysis.runs import collect_curves, collect_evals, find_runs, override_columns
from tests.helpers import ROOT, curve, done, hold_lock, make_run, rows, write_eval
from tina import run_dir as rd


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test gets an empty row cache: never the user's ~/.cache, never another test's rows."""
    monkeypatch.setenv("TINA_ANALYSIS_CACHE", str(tmp_path / "_cache"))


def one(path, **kw) -> pd.Series:
    df = analysis.collect(path, **kw)
    assert len(df) == 1
    return df.iloc[0]


def test_completed_run_row(tmp_path):
    run = make_run(tmp_path / "r", summary=done(), metrics=rows(10), checkpoints=(5, 10))
    r = one(run)
    assert r["status"] == "completed" and r["steps"] == 10 and r["max_steps"] == 10
    assert r["lora.rank"] == 8 and r["optim.lr"] == 0.001  # typed, not strings
    assert r["logged_steps"] == 10 and r["saved_steps"] == [5, 10]
    assert r["format_peak"] == pytest.approx(0.6) and r["format_final"] == pytest.approx(0.6)
    assert r["length_min"] == pytest.approx(29.0) and r["length_peak"] == pytest.approx(29.9)
    assert r["accuracy_final"] == pytest.approx(0.1) and r["kl_final"] == pytest.approx(0.01)
    assert r["reward_peak"] == pytest.approx(1.1) and r["reward_peak_step"] == 10
    assert r["heldout_base_accuracy"] == 0.25 and r["heldout_final_accuracy"] == 0.5
    # cost: 2 GPUs x 1 h on L40S at the paper's 1 USD/GPU-hour
    assert r["gpu_hours"] == pytest.approx(2.0) and r["usd"] == pytest.approx(2.0)
    assert r["gpu_type"] == "L40S" and r["tokens"] == 10000.0 and r["flops"] > 0
    assert r["flops_basis"].startswith("summary")  # /nonexistent/model has no config.json
    assert r["transition_step"] is None and r["best_checkpoint"] is None
    assert r["epochs"] == pytest.approx(0.04)
    df = analysis.collect(run)
    assert override_columns(df) == ["lora.rank", "optim.lr"]
    assert r["sweep"] == str(tmp_path) and r["name"] == "r"


def test_prices_override_and_unknown_gpu(tmp_path):
    make_run(tmp_path / "a", summary=done(), metrics=rows(3))
    assert one(tmp_path, prices={"L40S": 3.0})["usd"] == pytest.approx(6.0)
    prices = tmp_path / "p.yaml"
    prices.write_text("prices:\n  L40S: 0.5\n")
    assert one(tmp_path, prices=str(prices))["usd"] == pytest.approx(1.0)
    weird = done(device={"type": "cuda", "gpu_name": "TPU v5e", "num_gpus": 1, "gpu_type": None})
    make_run(tmp_path / "a", summary=weird, metrics=rows(3))
    r = one(tmp_path)
    assert pd.isna(r["usd"]) and "unknown GPU type 'TPU v5e'" in r["notes"]


def test_truncated_last_line_is_silent_corrupt_middle_line_is_noted(tmp_path):
    cut = make_run(tmp_path / "s" / "cut", summary=done(steps=5), metrics=rows(5),
                   tail='{"step": 6, "loss": 0.1, "rew')
    r = one(cut)
    assert r["logged_steps"] == 5 and r["status"] == "completed" and r["notes"] is None
    lines = [json.dumps(x) for x in rows(6)]
    lines[2] = lines[2][:20]
    (cut / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    r = one(cut)
    assert r["logged_steps"] == 5 and "corrupt metrics line" in r["notes"]


def test_failed_run_keeps_its_error(tmp_path):
    make_run(tmp_path / "f", metrics=rows(4), summary=done(
        steps=4, status="failed", error="RuntimeError: CUDA out of memory", wall_seconds=60.0))
    r = one(tmp_path)
    assert r["status"] == "failed" and r["error"] == "RuntimeError: CUDA out of memory"
    assert r["logged_steps"] == 4 and r["format_final"] == pytest.approx(0.54)
    assert r["usd"] == pytest.approx(60 / 3600 * 2)


def test_run_that_died_before_summary_reads_error_from_log(tmp_path):
    d = make_run(tmp_path / "x", config=False)
    (d / "train.log").write_text("[INFO] starting\nTraceback (most recent call last):\n  File ...\n"
                                 "tina.config.ConfigError: lora.rank: must be positive, got 0\n")
    r = one(tmp_path)
    assert r["status"] == "not started" and r["error"].startswith("tina.config.ConfigError: lora.rank")
    assert "no summary.json" in r["notes"] and "no config.yaml" in r["notes"]


def test_empty_run_and_empty_or_wrong_dirs(tmp_path):
    make_run(tmp_path / "sweep" / "0_a", overrides=["lora.rank=4"])  # .hydra only
    r = one(tmp_path / "sweep")
    assert r["status"] == "not started" and r["logged_steps"] == 0 and pd.isna(r["steps"])
    assert r["lora.rank"] == 4
    (tmp_path / "nothing").mkdir()
    with pytest.raises(ValueError, match=re.escape(str(tmp_path / "nothing"))):
        analysis.collect(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="no_such_dir"):
        analysis.collect(tmp_path / "no_such_dir")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match="f.txt"):
        analysis.collect(tmp_path / "f.txt")
    with pytest.raises(ValueError, match="at least one"):
        analysis.collect()


def test_in_progress_then_died(tmp_path):
    """A running run is one whose lock a live process holds (tina.run_dir.run_state, as tina.status)."""
    run = make_run(tmp_path / "r", summary={"status": "running", "steps": 0, "max_steps": 10,
                                            "wall_seconds": 0.0, "device": {"type": "cpu"}},
                   metrics=rows(4), tail='{"step": 5, "lo')
    hold_lock(run)
    r = one(run)
    assert r["status"] == "running" and r["steps"] == 4 and r["logged_steps"] == 4
    assert r["wall_seconds"] == pytest.approx(8.0)  # 4 x step_time: summary's wall comes at the end
    (run / rd.LOCK).write_text(json.dumps({"host": socket.gethostname(), "pid": 999999999}))
    r = one(run)
    assert r["status"] == "died" and "is gone" in r["notes"]
    (run / "summary.json").unlink()  # metrics but no summary
    r = one(run)
    assert r["status"] == "no summary" and r["summary_status"] is None


def test_missing_config_and_corrupt_summary(tmp_path):
    run = make_run(tmp_path / "r", summary=done(), metrics=rows(3), config=False, overrides=None)
    r = one(run)
    assert r["status"] == "completed" and r["max_steps"] == 10 and pd.isna(r["dataset.name"])
    assert "no config.yaml" in r["notes"]
    (run / "summary.json").write_text('{"status": "compl')
    r = one(run)
    assert "summary.json: unreadable" in r["notes"] and r["status"] == "unreadable"


def test_overrides_are_typed_and_sorted_naturally(tmp_path):
    for i, (rank, lr) in enumerate([(4, "5e-7"), (16, "1e-6"), (8, "5e-6")] * 4):
        make_run(tmp_path / f"{i}_r", summary=done(), metrics=rows(2), config=False,
                 overrides=[f"lora.rank={rank}", f"+optim.lr={lr}", "algorithm=dr_grpo",
                            "train.output_dir=/x", "flag=true"])
    df = analysis.collect(tmp_path)
    assert list(df["name"]) == [f"{i}_r" for i in range(12)]  # 2_r before 10_r
    assert set(override_columns(df)) == {"lora.rank", "optim.lr", "algorithm", "flag"}
    assert df["optim.lr"].iloc[0] == 5e-7 and df["flag"].tolist() == [True] * 12
    assert df["algorithm"].iloc[0] == "dr_grpo" and "train.output_dir" not in df


def test_transition_and_best_checkpoint(tmp_path):
    m, truth = curve(3, n=400, frac=0.55, noise=0.5)  # planted at step 220
    metrics = [{"step": int(s), FORMAT_KEY: float(f), LENGTH_KEY: float(L)}
               for s, f, L in zip(m["step"], m[FORMAT_KEY], m[LENGTH_KEY])]
    make_run(tmp_path / "t", summary=done(steps=400), metrics=metrics,
             checkpoints=range(50, 401, 50))
    r = one(tmp_path)
    assert truth == 220 and abs(r["transition_step"] - truth) <= 0.05 * 400, r["transition_step"]
    assert r["best_checkpoint"] == 200  # the last checkpoint at or before any step in 200..240
    assert "transition at" in r["transition_reason"]


def test_eval_files(tmp_path):
    """Results are read through tina.evaluate's reader: eval/<checkpoint>/<benchmark>.json."""
    run = make_run(tmp_path / "r", summary=done(steps=10), metrics=rows(10), checkpoints=(5, 10))
    for ck, step, a, b in (("checkpoint-5", 5, 0.5, 0.25), ("checkpoint-10", 10, 0.375, 0.25)):
        write_eval(run, ck, "aime24", a, step=step, runs=[a - 0.1, a, a, a + 0.1], seeds=[0, 1],
                   n_samples=2, **{"pass@1_std": 0.1})
        write_eval(run, ck, "amc23", b, step=step)
    write_eval(run, "base", "aime24", 0.2, step=0)
    write_eval(run, "adapter", "aime24", 0.125)  # the final adapter: step null, the run's last
    write_eval(run, "adapter", "amc23", 0.25)
    (run / "eval" / "checkpoint-5" / "merged").mkdir()
    (run / "eval" / "checkpoint-5" / "merged" / "config.json").write_text('{"hidden_size": 8}')
    (run / "eval" / "checkpoint-5" / "other.json").write_text('{"hidden_size": 8}')  # not a result
    write_eval(run, "checkpoint-5", "gpqa", "n/a", step=5)
    write_eval(run, "checkpoint-5", "minerva", 20.0, step=5)  # a percent is a writer's bug
    r = one(run)
    assert r["eval_checkpoint"] == "checkpoint-5" and r["eval_step"] == 5
    assert r["eval_avg"] == pytest.approx(0.375) and r["eval_n_benchmarks"] == 2
    assert r["eval/aime24"] == 0.5 and r["eval/amc23"] == 0.25
    assert r["eval_base_avg"] == pytest.approx(0.2)
    assert r["eval_final_avg"] == pytest.approx(0.1875)  # the adapter counts as the last
    assert "gpqa.json: skipped, pass@1 'n/a'" in r["notes"] and "minerva.json: skipped" in r["notes"]
    assert "config.json" not in r["notes"] and "other.json" not in r["notes"]
    ev = collect_evals(run)
    assert len(ev) == 7 and set(ev["checkpoint"]) == {"checkpoint-5", "checkpoint-10", "base", "adapter"}
    assert ev.loc[ev["checkpoint"] == "adapter", "step"].tolist() == [10, 10]
    assert ev["pass@1_std"].notna().sum() == 2
    # spread over sampling seeds: per-seed means 0.45 and 0.55 at checkpoint-5
    seed_sd = ev.loc[(ev["checkpoint"] == "checkpoint-5") & (ev["benchmark"] == "aime24"), "pass@1_seed_std"]
    assert seed_sd.item() == pytest.approx(0.0707, abs=1e-4)
    # a new eval file changes the row: the cache notices
    write_eval(run, "checkpoint-10", "gpqa", 0.9, step=10)
    r = one(run)
    assert r["eval_checkpoint"] == "checkpoint-10" and r["eval_n_benchmarks"] == 3


def test_cache_and_pool_give_the_same_rows(tmp_path):
    for i in range(10):
        make_run(tmp_path / f"{i}_r", summary=done(), metrics=rows(5 + i),
                 overrides=[f"lora.rank={i}"])
    serial = analysis.collect(tmp_path, workers=1, cache=False)
    pooled = analysis.collect(tmp_path, workers=2)  # fills the cache
    cached = analysis.collect(tmp_path, workers=2)  # reads it
    drop = ["notes"]
    pd.testing.assert_frame_equal(serial.drop(columns=drop), pooled.drop(columns=drop))
    pd.testing.assert_frame_equal(pooled, cached)
    # a run whose metrics grow is recomputed, the others are not
    (tmp_path / "3_r" / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in rows(30)))
    again = analysis.collect(tmp_path)
    assert again.loc[again["name"] == "3_r", "logged_steps"].item() == 30
    assert (again["logged_steps"].drop(3) == cached["logged_steps"].drop(3)).all()


def test_collect_curves_long_form(tmp_path):
    make_run(tmp_path / "a", summary=done(), metrics=rows(5))
    make_run(tmp_path / "b", summary=done(), metrics=[])
    c = collect_curves(tmp_path)
    assert list(c.columns) == ["run", "step", "metric", "value"]
    assert set(c["metric"]) == {"reward", "format", "accuracy", "length", "kl"} and len(c) == 25
    assert len(collect_curves(analysis.collect(tmp_path), keys=["format", "loss"])) == 10
    assert "entropy" not in set(collect_curves(tmp_path, keys="all")["metric"])
    assert "step_time" in set(collect_curves(tmp_path, keys="all")["metric"])


def test_find_runs_does_not_enter_runs(tmp_path):
    run = make_run(tmp_path / "s" / "0_r", summary=done(), metrics=rows(2), checkpoints=(1,))
    (rd.checkpoint_dir(run, 1) / rd.SUMMARY).write_text("{}")  # must not count
    (tmp_path / "s" / ".git" / "x").mkdir(parents=True)
    (tmp_path / "s" / ".git" / "x" / "metrics.jsonl").write_text("")
    assert find_runs(tmp_path) == [run]
    assert find_runs(run / "summary.json") == [run]


def test_package_exports_collect_lazily():
    """analysis.collect is the entry point, and `import analysis` stays light so that
    `python -m analysis.phase` does not find its module imported already (runpy warns)."""
    code = ("import sys, analysis; assert 'analysis.runs' not in sys.modules; "
            "import analysis.report; assert callable(analysis.collect); "
            "from analysis import collect; assert collect.__module__ == 'analysis.runs'; "
            "assert analysis.collect_curves.__name__ == 'collect_curves'")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "analysis.phase", str(ROOT / "no_such_run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "RuntimeWarning" not in proc.stderr


def test_status_and_collect_count_the_same_runs(tmp_path):
    """One definition of a run directory: a config alone (a run refused mid-start keeps it) or
    logged steps alone (a killed run before its summary) make a run for tina.status and reports alike."""
    from tina.status import sweep_status

    (tmp_path / "0_config").mkdir()
    (tmp_path / "0_config" / rd.CONFIG).write_text("lora: {rank: 4}\n")
    (tmp_path / "1_metrics").mkdir()
    (tmp_path / "1_metrics" / rd.METRICS).write_text('{"step": 1, "reward": 0.5}\n')
    (tmp_path / "2_empty").mkdir()  # Hydra's sweep folder before the job wrote anything: no run
    assert [p.name for p in find_runs(tmp_path)] == ["0_config", "1_metrics"]
    assert [(Path(r["run_dir"]).name, r["status"]) for r in sweep_status(tmp_path)] == [
        ("0_config", "not started"), ("1_metrics", "no summary")]


def test_the_pruner_reads_metrics_through_the_one_parser(tmp_path):
    """tina.search's pruning feed: a null value and a half-written last line are what
    tina.metrics says they are, not a crash of the search driver."""
    from tina.search import Trial

    (tmp_path / rd.METRICS).write_text('{"step": 1, "reward": 1.0}\n{"step": 2, "reward": null}\n'
                                       '{"step": 3, "reward": 3.0}\n{"step": 4, "rew')
    assert Trial._windowed(None, tmp_path, "reward", 2) == [(1, 1.0), (3, 2.0)]
