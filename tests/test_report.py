"""analysis.collect and analysis.report: hand-written run directories for every state a run can be
in, and one real tiny sweep (python -m tina.train -m ...) collected and reported end to end."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.collect import collect_curves, collect_evals, find_runs, override_columns
from analysis.phase import FORMAT_KEY, LENGTH_KEY, detect
from analysis.report import main as report_main, pareto
from tests.test_phase import curve

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test gets an empty row cache: never the user's ~/.cache, never another test's rows."""
    monkeypatch.setenv("TINA_ANALYSIS_CACHE", str(tmp_path / "_cache"))


# ----------------------------------------------------------------------------- hand-written runs
def rows(n: int, start: int = 1) -> list[dict]:
    return [{"step": s, "loss": 0.0, "reward": 1.0 + s / 100, FORMAT_KEY: 0.5 + s / 100,
             "rewards/accuracy_reward/mean": s / 100, LENGTH_KEY: 30.0 - s / 10,
             "kl": s / 1000, "step_time": 2.0, "epoch": s / 250, "num_tokens": 1000.0 * s}
            for s in range(start, start + n)]


def make_run(d: Path, *, summary: dict | None = None, metrics: list[dict] | None = None,
             tail: str = "", overrides=("lora.rank=8", "optim.lr=1e-3"), config=True,
             checkpoints=()) -> Path:
    (d / ".hydra").mkdir(parents=True, exist_ok=True)
    if overrides is not None:
        (d / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if config:
        rank = dict(o.split("=") for o in overrides or ()).get("lora.rank", 8)
        (d / "config.yaml").write_text(
            f"model: {{name_or_path: /nonexistent/model}}\nlora: {{rank: {rank}}}\n"
            f"optim: {{lr: 0.001}}\nalgorithm: {{name: grpo, beta: 0.04}}\n"
            f"dataset: {{name: toy}}\ntrain: {{max_steps: 10}}\n")
    if summary is not None:
        (d / "summary.json").write_text(json.dumps(summary))
    if metrics is not None:
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics) + tail)
    for s in checkpoints:
        (d / "checkpoints" / f"checkpoint-{s}").mkdir(parents=True)
    return d


def done(steps=10, **kw) -> dict:
    return {"status": "completed", "steps": steps, "max_steps": 10, "wall_seconds": 3600.0,
            "device": {"type": "cuda", "gpu_name": "NVIDIA L40S", "num_gpus": 2, "gpu_type": "L40S"},
            "num_params": 1000, "trainable_params": 10, "error": None,
            "heldout_base": {"format": 0.5, "accuracy": 0.25, "n": 8},
            "heldout_final": {"format": 0.75, "accuracy": 0.5, "n": 8}, **kw}


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
    assert r["status"] == "failed" and r["error"].startswith("tina.config.ConfigError: lora.rank")
    assert "no summary.json" in r["notes"] and "no config.yaml" in r["notes"]


def test_empty_run_and_empty_or_wrong_dirs(tmp_path):
    make_run(tmp_path / "sweep" / "0_a", overrides=["lora.rank=4"])  # .hydra only
    r = one(tmp_path / "sweep")
    assert r["status"] == "empty" and r["logged_steps"] == 0 and pd.isna(r["steps"])
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


def test_in_progress_then_stale(tmp_path):
    run = make_run(tmp_path / "r", summary={"status": "running", "steps": 0, "max_steps": 10,
                                            "wall_seconds": 0.0, "device": {"type": "cpu"}},
                   metrics=rows(4), tail='{"step": 5, "lo')
    r = one(run)
    assert r["status"] == "running" and r["steps"] == 4 and r["logged_steps"] == 4
    assert r["wall_seconds"] == pytest.approx(8.0)  # 4 x step_time: summary's wall comes at the end
    old = time.time() - 7200
    for f in ("summary.json", "metrics.jsonl"):
        os.utime(run / f, (old, old))
    assert one(run)["status"] == "stale"
    assert one(run, stale_after=None)["status"] == "running"
    (run / "summary.json").unlink()  # metrics but no summary: running (the summary was lost)
    r = one(run, stale_after=None)
    assert r["status"] == "running" and r["summary_status"] is None


def test_missing_config_and_corrupt_summary(tmp_path):
    run = make_run(tmp_path / "r", summary=done(), metrics=rows(3), config=False, overrides=None)
    r = one(run)
    assert r["status"] == "completed" and r["max_steps"] == 10 and pd.isna(r["dataset.name"])
    assert "no config.yaml" in r["notes"]
    (run / "summary.json").write_text('{"status": "compl')
    r = one(run)
    assert "summary.json unreadable" in r["notes"] and r["status"] == "running"


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
    m, truth = curve(3, n=400, frac=0.5, noise=0.5)
    metrics = [{"step": int(s), FORMAT_KEY: float(f), LENGTH_KEY: float(L)}
               for s, f, L in zip(m["step"], m[FORMAT_KEY], m[LENGTH_KEY])]
    make_run(tmp_path / "t", summary=done(steps=400), metrics=metrics,
             checkpoints=range(50, 401, 50))
    r = one(tmp_path)
    assert r["transition_step"] == detect(tmp_path / "t")["step"]  # the detector's answer, as is
    assert abs(r["transition_step"] - truth) <= 0.05 * 400, (r["transition_step"], truth)
    assert r["best_checkpoint"] == max(s for s in range(50, 401, 50) if s <= r["transition_step"])
    assert "transition at" in r["transition_reason"]


def write_eval(run: Path, rel: str, obj) -> None:
    p = run / "eval" / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj))


def test_eval_files(tmp_path):
    run = make_run(tmp_path / "r", summary=done(steps=10), metrics=rows(10), checkpoints=(5, 10))
    # the format tina.evaluate writes: eval/<checkpoint>/<benchmark>.json
    for ck, step, a, b in (("checkpoint-5", 5, 0.5, 0.25), ("checkpoint-10", 10, 0.375, 0.25)):
        write_eval(run, f"{ck}/aime24.json", {"benchmark": "aime24", "checkpoint": ck, "step": step,
                                              "pass@1": a, "pass@1_std": 0.1, "runs": [a]})
        write_eval(run, f"{ck}/amc23.json", {"benchmark": "amc23", "checkpoint": ck, "step": step,
                                             "pass@1": b})
    write_eval(run, "base/aime24.json", {"benchmark": "aime24", "checkpoint": "base", "pass@1": 20.0})
    write_eval(run, "adapter/all.json", [{"benchmark": "aime24", "pass@1": 0.125},
                                         {"benchmark": "amc23", "pass@1": 0.25}])
    write_eval(run, "checkpoint-5/merged/config.json", {"hidden_size": 8})  # ignored: too deep
    write_eval(run, "checkpoint-5/other.json", {"hidden_size": 8})  # ignored: not a result
    write_eval(run, "checkpoint-5/bad.json", {"benchmark": "gpqa", "pass@1": "n/a"})
    r = one(run)
    assert r["eval_checkpoint"] == "checkpoint-5" and r["eval_step"] == 5
    assert r["eval_avg"] == pytest.approx(0.375) and r["eval_n_benchmarks"] == 2
    assert r["eval/aime24"] == 0.5 and r["eval/amc23"] == 0.25
    assert r["eval_base_avg"] == pytest.approx(0.2)  # 20.0 read as a percent, with a note
    assert r["eval_final_avg"] == pytest.approx(0.1875)  # the adapter counts as the last
    assert "read as a percent" in r["notes"] and "bad.json: skipped" in r["notes"]
    assert "config.json" not in r["notes"] and "other.json" not in r["notes"]
    ev = collect_evals(run)
    assert len(ev) == 7 and set(ev["checkpoint"]) == {"checkpoint-5", "checkpoint-10", "base", "adapter"}
    assert ev.loc[ev["checkpoint"] == "adapter", "step"].tolist() == [10, 10]
    assert ev["pass@1_std"].notna().sum() == 2
    # a new eval file changes the row: the cache notices
    write_eval(run, "checkpoint-10/gpqa.json", {"benchmark": "gpqa", "pass@1": 0.9})
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
    (run / "checkpoints" / "checkpoint-1" / "summary.json").write_text("{}")  # must not count
    (tmp_path / "s" / ".git" / "x").mkdir(parents=True)
    (tmp_path / "s" / ".git" / "x" / "metrics.jsonl").write_text("")
    assert find_runs(tmp_path) == [run]
    assert find_runs(run / "summary.json") == [run]


def test_package_exports_collect_lazily():
    """analysis.collect is the entry point, and `import analysis` stays light so that
    `python -m analysis.phase` does not find its module imported already (runpy warns)."""
    code = ("import sys, analysis; assert 'analysis.collect' not in sys.modules; "
            "import analysis.report; assert callable(analysis.collect); "
            "from analysis.collect import collect; assert analysis.collect_curves.__name__ == "
            "'collect_curves'")
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, "-m", "analysis.phase", str(ROOT / "no_such_run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert "RuntimeWarning" not in proc.stderr


# ----------------------------------------------------------------------------- the report
def test_pareto():
    cost = np.array([1.0, 2.0, 3.0, 1.0, 5.0])
    acc = np.array([0.5, 0.4, 0.7, 0.6, 0.7])
    assert sorted(pareto(cost, acc).tolist()) == [2, 3]


def _check_html(page: Path) -> str:
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text), "external asset or link"
    assert "<script" not in text and "<link" not in text
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert imgs and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    return text


def test_report_on_hand_written_sweep(tmp_path, capsys):
    sweep = tmp_path / "sweep"
    m, _ = curve(1, n=300)
    full = [{"step": int(s), FORMAT_KEY: float(f), LENGTH_KEY: float(L), "kl": 0.001 * s,
             "rewards/accuracy_reward/mean": 0.3} for s, f, L in zip(m["step"], m[FORMAT_KEY], m[LENGTH_KEY])]
    make_run(sweep / "0_lora.rank=4", summary=done(steps=300), metrics=full,
             overrides=["lora.rank=4"], checkpoints=(100, 200, 300))
    make_run(sweep / "1_lora.rank=16", summary=done(steps=300, wall_seconds=7200.0), metrics=full,
             overrides=["lora.rank=16"])
    make_run(sweep / "2_lora.rank=8", summary=done(steps=3, status="failed", error="OSError: disk full"),
             metrics=rows(3), overrides=["lora.rank=8"])
    make_run(sweep / "3_lora.rank=32", overrides=["lora.rank=32"])  # empty
    make_run(sweep / "4_lora.rank=64", summary={"status": "running", "steps": 0}, metrics=rows(3),
             tail='{"st', overrides=["lora.rank=64"])
    out = tmp_path / "out"
    assert report_main([str(sweep), "--out", str(out), "--paper"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "report.md"), str(out / "report.html"), str(out / "report_files")]
    md = (out / "report.md").read_text()
    # one table, runs sorted by the axis (4, 8, 16, 32, 64), the constants stated once
    table = [ln for ln in md.splitlines() if ln.startswith("| #")]
    assert [ln.split("|")[2].strip() for ln in table[:5]] == ["4", "8", "16", "32", "64"]
    assert "axes: lora.rank" in md and "Same in every run:" in md and "dataset.name=toy" in md
    assert "OSError: disk full" in md and "| empty |" in md and "| running |" in md
    for png in re.findall(r"\]\((report_files/[^)]+\.png)\)", md):
        assert (out / png).is_file()
    assert "Tina-LIMR-16-LoRA-rank" in md and "LoRA rank ablation" in md
    assert "held-out accuracy after training" in md  # the accuracy measure used
    text = _check_html(out / "report.html")
    assert "Pareto" in text and "Tina-Open-RS2" in text


def test_report_errors(tmp_path, capsys):
    assert report_main([str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty")]) == 2
    assert "no runs found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- a real sweep
@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory):
    """Two real LoRA-GRPO runs of the embedded tiny model (6 steps each, ~1 min on CPU)."""
    sweep = tmp_path_factory.mktemp("real") / "sweep"
    cmd = [sys.executable, "-m", "tina.train", "-m", f"hydra.sweep.dir={sweep}",
           "train.max_steps=6", "train.save_steps=3", "lora.rank=4,8"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return sweep


def test_real_sweep_collect_and_report(real_sweep, tmp_path):
    df = analysis.collect(real_sweep)
    assert len(df) == 2 and (df["status"] == "completed").all()
    assert sorted(df["lora.rank"]) == [4, 8] and "lora.rank" in override_columns(df)
    assert (df["steps"] == 6).all() and (df["logged_steps"] == 6).all()
    assert all(s == [3, 6] for s in df["saved_steps"])
    for col in ("format_peak", "accuracy_final", "length_min", "kl_final", "heldout_base_accuracy",
                "heldout_final_accuracy", "tokens", "flops", "wall_seconds"):
        assert df[col].notna().all() and (df[col] >= 0).all(), col
    assert (df["usd"] == 0).all() and (df["gpu_type"] == "cpu").all()  # a CPU run costs nothing
    assert (df["flops_basis"] == "model config").all()  # the tiny model's config.json, found
    assert df["trainable_params"].iloc[1] > df["trainable_params"].iloc[0]  # rank 8 > rank 4
    # 6 points are too few for the detector: no transition, and it says why
    assert df["transition_step"].isna().all() and df["transition_reason"].str.contains("usable").all()
    curves = collect_curves(df)
    assert len(curves[(curves["metric"] == "format")]) == 12

    # an evaluation result, in the evaluation step's format, shows up in the row and the report
    run = Path(df["run"].iloc[0])
    write_eval(run, "checkpoint-3/toy.json", {"benchmark": "toy", "checkpoint": "checkpoint-3",
                                              "step": 3, "pass@1": 0.5})
    assert analysis.collect(real_sweep)["eval/toy"].iloc[0] == 0.5

    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "analysis.report", str(real_sweep), "--out", str(out),
                           "--paper"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[:2] == [str(out / "report.md"), str(out / "report.html")]
    md = (out / "report.md").read_text()
    assert "axes: lora.rank" in md and "evaluation average pass@1" in md and "toy %" in md
    _check_html(out / "report.html")
