"""analysis.report: hand-written sweeps in every state, and the real tiny sweep (tests/helpers.py),
rendered to report.md and report.html; what the page says is checked here, how it renders in a
browser in tests/test_report_browser.py."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis.document import Heading, Image, Para, Table, render_html, render_md
from tina.phase import detect
from analysis.plots import pareto, smooth
from analysis.report import main as report_main
from analysis.runs import collect_curves, override_columns
from tests.helpers import (ROOT, done, hand_written_sweep, make_run, real_sweep, rows,
                           transition_metrics, write_eval)
from tina.evaluate.results import read_results


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """Each test gets an empty row cache: never the user's ~/.cache, never another test's rows."""
    monkeypatch.setenv("TINA_ANALYSIS_CACHE", str(tmp_path / "_cache"))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    return real_sweep(tmp_path_factory)


def check_html(page: Path) -> str:
    """Self-contained: no script, link or external asset; every image an embedded PNG."""
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["'](?!data:|#)""", text), "external asset or link"
    assert "<script" not in text and "<link" not in text
    imgs = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert imgs and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in imgs)
    return text


def md_tables(md: str) -> list[list[dict]]:
    """Each markdown table of a report as a list of {header: cell} rows."""
    out, cur, head = [], None, None
    for line in md.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split(" | ")]
            if head is None:
                head, cur = cells, []
            elif not line.startswith("|---"):
                cur.append(dict(zip(head, cells)))
        elif head is not None:
            out.append(cur)
            head = None
    return out


def table_after(md: str, marker: str) -> list[dict]:
    """The first table after the line containing ``marker``."""
    return md_tables(md[md.index(marker):])[0]


# ----------------------------------------------------------------------------- blocks
def test_blocks_render_to_markdown_and_html():
    df = pd.DataFrame({"run": ["#0"], "status": ["failed"], "notes": ["a <b> | c"]})
    blocks = [Heading(1, "t"), Para("p"), Heading(2, "Two words"), Table(df, caption="cap"),
              Image("x.png", b"\x89PNG", "alt", caption="what is drawn")]
    md = render_md(blocks, "files")
    assert "## Two words" in md and "*cap*" in md and "a &lt;b&gt; \\| c" in md and "<b>" not in md
    assert "![alt](files/x.png)" in md and "*what is drawn*" in md
    page = render_html(blocks, "t")
    assert '<h2 id="two-words">' in page and '<a href="#two-words">' in page
    assert '<td class="bad">failed</td>' in page and "a &lt;b&gt; | c" in page
    assert "<figcaption>what is drawn</figcaption>" in page and "<caption>cap</caption>" in page


# ----------------------------------------------------------------------------- Pareto
def test_pareto_is_strict():
    cost = np.array([1.0, 2.0, 3.0, 1.0, 5.0])
    acc = np.array([0.5, 0.4, 0.7, 0.6, 0.7])
    assert pareto(cost, acc).tolist() == [3, 2]  # sorted by cost
    # same cost: only the more accurate; same accuracy: only the cheaper; identical: the first
    assert pareto(np.array([2.0, 2.0, 1.0]), np.array([0.5, 0.6, 0.1])).tolist() == [2, 1]
    assert pareto(np.array([1.0, 3.0, 2.0]), np.array([0.7, 0.7, 0.2])).tolist() == [0]
    assert pareto(np.array([1.0, 1.0]), np.array([0.5, 0.5])).tolist() == [0]
    assert pareto(np.array([]), np.array([])).tolist() == []


def test_smoothing_ignores_spikes():
    """The KL panel's scale comes from the smoothed curve: one-step spikes must not lift it."""
    y = np.linspace(0.0, 0.002, 400)
    y[[70, 71, 300]] = 0.5
    ys, w = smooth(y)
    assert w == 16 and ys.max() < 0.0025 and np.allclose(ys[150:250], y[150:250], atol=1e-4)
    assert smooth(np.ones(6))[1] == 1  # too short to smooth: drawn raw


# ----------------------------------------------------------------------------- hand-written sweeps
def test_report_on_hand_written_sweep(tmp_path, capsys):
    sweep = hand_written_sweep(tmp_path / "sweep")
    out = tmp_path / "out"
    assert report_main([str(sweep), "--out", str(out), "--paper"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / "report.md"), str(out / "report.html"), str(out / "report_files")]
    md = (out / "report.md").read_text()
    assert md.startswith(f"# tina report: sweep {sweep}\n")
    # two tables per sweep (training; evaluation and cost), runs sorted by the axis, constants once
    training, cost = table_after(md, "*Training*"), table_after(md, "*Evaluation and cost*")
    assert [r["lora.rank"] for r in training] == ["4", "8", "16", "32", "64"]
    assert [r["lora.rank"] for r in cost] == ["4", "8", "16", "32", "64"]
    assert [r["status"] for r in training] == ["completed", "failed", "completed", "not started", "running"]
    assert training[0]["held-out acc. % base→final"] == "25.0→50.0"  # a percent, like the paper's
    assert cost[2]["USD"] == "4.00" and cost[1]["notes"] == "OSError: disk full"
    assert "axes: lora.rank" in md and "Same in every run:" in md and "dataset.name=toy" in md
    for png in re.findall(r"\]\((report_files/[^)]+\.png)\)", md):
        assert (out / png).is_file()
    # the curves' caption says what is drawn, and which runs are not
    assert "Dashed: detected transition (2 of 4 runs)." in md
    assert "Not drawn: 1 run logged no step: lora.rank=32." in md
    # cost vs accuracy: the measure named, every run left out named with its reason
    assert "Accuracy: held-out accuracy after training (%)" in md
    assert "Drawn: 3 of 5 runs. Left out: lora.rank=32 (logged no step); lora.rank=64 (no held-out " \
           "accuracy (training did not finish))." in md
    # ties on cost and accuracy (rank 4 and rank 8: 2 USD, 50%): one point on the frontier
    assert [r["Pareto run"] for r in table_after(md, "Left out:")] == ["#0"]
    # the paper beside the reproduction, in one table and one unit; two measures, two columns
    rank = table_after(md, "### LoRA rank")
    paper = {r["LoRA rank"]: r for r in rank if r["source"] == "paper"}
    ours = {r["LoRA rank"]: r for r in rank if r["source"] == "this reproduction"}
    assert paper["16"]["model / runs"] == "Tina-LIMR-16-LoRA-rank" and paper["16"]["paper: avg of 6 %"] == "48.9"
    assert set(ours) == {"4", "8", "16", "32", "64"} and ours["4"]["ours: accuracy %"] == "50.0"
    assert paper["16"]["ours: accuracy %"] == ours["4"]["paper: avg of 6 %"] == "—"
    assert ours["4"]["best at % epoch"] == "33"  # checkpoint 100 of a 300-step, 1-epoch run
    assert "No run was evaluated at more than one checkpoint" in md
    text = check_html(out / "report.html")
    assert "Pareto" in text and "Tina-Open-RS2" in text


def test_single_run_report_is_titled_by_its_run(tmp_path):
    run = make_run(tmp_path / "outputs" / "2026-11-29" / "10-00-00", summary=done(steps=10),
                   metrics=rows(10))
    assert report_main([str(run), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.startswith("# tina report: run 10-00-00\n")
    assert f"## Run {run}" in md and "Sweep" not in md
    # nothing detected in 10 steps: no "dashed" legend for lines that are not there
    assert "Dashed" not in md and "No transition detected in these runs" in md


def _early_stop_run(run: Path, peak: int, checkpoints=range(50, 301, 50)) -> list[float]:
    """A 300-step run (transition near 150) evaluated at every checkpoint; accuracy peaks at
    ``peak``. Returns the accuracies written, in checkpoint order."""
    make_run(run, summary=done(steps=300), metrics=transition_metrics(300), checkpoints=checkpoints,
             overrides=[f"seed={peak}"])
    accs = [round(0.6 - abs(s - peak) / 1000, 4) for s in checkpoints]
    for s, a in zip(checkpoints, accs):
        for bench, shift in (("toy", 0.0), ("aime24", -0.2)):
            write_eval(run, f"checkpoint-{s}", bench, a + shift, step=s, seeds=[0, 1], n_samples=1,
                       runs=[a + shift - 0.01, a + shift + 0.01])
    return accs


def test_early_stopping_section(tmp_path):
    sweep = tmp_path / "sweep"
    before = _early_stop_run(sweep / "0_seed=100", peak=100)
    after = _early_stop_run(sweep / "1_seed=250", peak=250)
    make_run(sweep / "2_seed=7", summary=done(steps=10), metrics=rows(10), overrides=["seed=7"])
    for bench in ("toy", "aime24"):  # the base model, evaluated for one run (eval.include_base=true)
        write_eval(sweep / "0_seed=100", "base", bench, 0.2, seeds=[0, 1], n_samples=1, runs=[0.19, 0.21])
    t = detect(sweep / "0_seed=100")["step"]
    assert t is not None and 100 < t < 250
    assert report_main([str(sweep), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    section = md[md.index("## Best checkpoint and the phase transition"):]
    assert "The best checkpoint sits at or before the detected transition in 1 of 2 runs" in section
    rows_ = {r["run"]: r for r in table_after(section, "Best checkpoint:")}
    assert rows_["seed=100"]["evaluated"] == "6/6"
    r = rows_["seed=100"]
    assert r["best ckpt"] == "100" and r["transition"] == str(t) and r["at or before"] == "yes"
    assert r["best − transition"] == f"{100 - t:+d}"
    assert r["(% epoch)"] == f"{100 * (100 - t) / 300:+.0f}"  # 300 steps = one epoch
    # mean over the two benchmarks: best at 100, final at 300
    assert r["best %"] == f"{100 * (max(before) - 0.1):.1f}" and r["final ckpt"] == "300"
    assert r["lost by final (pts)"] == f"{100 * (max(before) - before[-1]):.1f}"
    assert rows_["seed=250"]["at or before"] == "no" and rows_["seed=250"]["best ckpt"] == "250"
    assert after[-1] < max(after)
    assert "Not in this section (1): seed=7 (never evaluated)" in section
    assert section.count("![checkpoints of") == 2
    assert "red dashed: detected transition at step" in section
    # the base model is drawn at step 0 where it was evaluated, and its absence said where not
    assert section.count("squares at step 0: the base model before training") == 1
    assert section.count("the base model was not evaluated") == 1


# ----------------------------------------------------------------------------- errors
def test_report_errors(tmp_path, capsys):
    assert report_main([str(tmp_path / "missing")]) == 2
    assert "missing" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report_main([str(tmp_path / "empty")]) == 2
    assert "no runs found" in capsys.readouterr().err


# ----------------------------------------------------------------------------- the real sweep
def test_real_sweep_collect_and_report(sweep, tmp_path):
    """Two real runs of the embedded model, the first evaluated at every checkpoint."""
    df = analysis.collect(sweep)
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
    assert df["transition_step"].isna().all()
    assert df["transition_reason"].str.contains("only 6 usable points").all()
    curves = collect_curves(df)
    assert len(curves[(curves["metric"] == "format")]) == 12
    # the evaluation tina.evaluate wrote, as its own reader reads it
    run = Path(df["run"].iloc[0])
    recs = read_results(run)
    by_step = {r["step"]: r["pass@1"] for r in recs}
    assert sorted(by_step) == [3, 6] and df["eval_avg"].iloc[0] == max(by_step.values())

    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "analysis.report", str(sweep), "--out", str(out),
                           "--paper"], capture_output=True, text=True, cwd=ROOT, timeout=300,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[:2] == [str(out / "report.md"), str(out / "report.html")]
    md = (out / "report.md").read_text()
    assert "axes: lora.rank" in md and "toy %" in md
    assert "Accuracy: evaluation pass@1 (%), mean over the benchmarks evaluated" in md
    assert "Left out: lora.rank=8 (never evaluated (has held-out accuracy only" in md
    # the checkpoint experiment on the embedded default: no transition, said plainly, with why
    section = md[md.index("## Best checkpoint and the phase transition"):]
    assert "No transition was detected in 1 run" in section and "only 6 usable points" in section
    best = max(by_step, key=lambda s: (by_step[s], -s))
    r = table_after(section, "Best checkpoint:")[0]
    assert r["evaluated"] == "2/2" and r["best ckpt"] == str(best) and r["final ckpt"] == "6"
    assert r["transition"] == "—"
    assert r["lost by final (pts)"] == f"{100 * (by_step[best] - by_step[6]):.1f}"
    assert "no transition detected: neither" in section
    assert "Not in this section (1): lora.rank=8 (never evaluated)" in section
    check_html(out / "report.html")


# ----------------------------------------------------------------------------- trainer settings outside the axes
def test_trainer_settings_that_differ_outside_the_sweeps_axes_are_flagged(sweep, tmp_path):
    """The real sweep (axis lora.rank) records what TRL resolved in each run; the copy's second run is
    then left as a TRL upgrade between the two jobs would leave it: a default moved (a field tina does
    not set) and a value tina set alike resolved differently. The report names both fields, nothing else."""
    import json
    import shutil

    from analysis import trainer_drift
    from tina import run_dir as rd

    runs = sorted(p for p in sweep.iterdir() if (p / rd.SUMMARY).is_file())
    records = [rd.read_trainer_config(r) for r in runs]
    assert all(r["resolved"]["loss_type"] == "grpo" for r in records)
    assert records[0]["resolved"]["run_name"] != records[1]["resolved"]["run_name"]  # set by tina per run: explained
    assert trainer_drift.drift(runs).empty and trainer_drift.blocks(runs, {}) == []

    copy = tmp_path / "sweep"
    for r in runs:
        shutil.copytree(r, copy / r.name, ignore=shutil.ignore_patterns("checkpoints", "adapter", "eval"))
    second = copy / runs[1].name
    record = rd.read_trainer_config(second)
    assert "logging_first_step" not in record["set_by_tina"] and record["set_by_tina"]["epsilon"] == 0.2
    record["resolved"].update(logging_first_step=not record["resolved"]["logging_first_step"], epsilon=0.3)
    record["trl"] = "1.17.0"
    (second / rd.TRAINER_CONFIG).write_text(json.dumps(record))

    flagged = trainer_drift.drift(sorted(copy.iterdir()))
    assert list(flagged["field"]) == ["epsilon", "logging_first_step", "trl"]
    out = tmp_path / "report"
    assert report_main([str(copy), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "Warning: 3 trainer setting(s) differ between runs of this sweep outside its axes" in md
    rows = table_after(md, "Trainer settings that differ outside the sweep's axes")
    assert [r["field"] for r in rows] == ["epsilon", "logging_first_step", "trl"]
    assert {r["lora.rank=8"] for r in rows if r["field"] == "epsilon"} == {"0.3"}


def test_search_section_reads_as_a_table_for_people(tmp_path):
    """A study as tina.search leaves it (two complete trials, one pruned): the objective and the
    pruning metric in columns of their own, numbers rounded, dashes not nan, the best starred, no
    True/False; importances from two trials carry a caveat; pruned is not 'needs attention'."""
    import optuna
    import yaml
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from analysis.report import _search_blocks
    from analysis.search_report import search_section

    sweep = tmp_path / "search"
    sweep.mkdir()
    (sweep / "search.yaml").write_text(yaml.safe_dump({"space": {
        "objective": "heldout_final.accuracy", "prune": {"metric": "rewards/format_reward/mean"}}, "fixed": []}))
    study = optuna.create_study(study_name="tina", direction="maximize",
                                storage=JournalStorage(JournalFileBackend(str(sweep / "study.journal"))))
    dist = {"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True),
            "lora.rank": optuna.distributions.CategoricalDistribution([4, 8])}
    for lr, rank, value in ((0.0022881136684755237, 4, 0.8125), (0.000513, 8, 0.6875)):
        study.add_trial(optuna.trial.create_trial(params={"optim.lr": lr, "lora.rank": rank}, distributions=dist,
                                                  value=value))
    study.add_trial(optuna.trial.create_trial(params={"optim.lr": 0.0091, "lora.rank": 8}, distributions=dist,
                                              state=optuna.trial.TrialState.PRUNED, value=0.3333333333,
                                              intermediate_values={4: 0.5, 8: 0.3333333333},
                                              user_attrs={"pruned_at": 8}))
    found = search_section(sweep)
    table = found.table()
    assert list(table.columns[:7]) == ["trial", "state", "objective: heldout_final.accuracy", "pruned at step",
                                       "rewards/format_reward/mean there", "steps", "best"]
    assert list(table["objective: heldout_final.accuracy"]) == ["0.8125", "0.6875", "—"]
    assert list(table["pruned at step"]) == ["—", "—", "8"] and table["rewards/format_reward/mean there"][2] == "0.3333"
    assert list(table["best"]) == ["★", "", ""] and list(table["optim.lr"])[0] == "0.002288"
    cells = {str(v) for v in table.to_numpy().ravel()}
    assert not cells & {"nan", "None", "True", "False"} and not any(len(c) > 12 and c[0].isdigit() for c in cells)
    md = render_md(_search_blocks({sweep: found}), "files")
    assert "Parameter importances (fANOVA) from 2 complete trials: too few" in md
    assert "needs no attention" in md
