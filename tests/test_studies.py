"""Studies (study/NAME.yaml, `+study=NAME`): each composes at toy and paper scale, is priced, and its
report section ends in a sentence the verdicts decide (analysis/studies.py)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import studies
from tests.helpers import run_cli
from tests.synthetic_outcomes import ids, write_run
from tina import plan
from tina import run_dir as rd
from tina.evaluate.results import result_path, write

ROOT = Path(__file__).resolve().parents[1]
NAMES = sorted(p.stem for p in (ROOT / "study").glob("*.yaml"))
PAPER_MODELS = ("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "Qwen/Qwen2.5-1.5B-Instruct")


def test_every_study_file_has_a_judge_and_the_header_commands():
    assert NAMES == sorted(studies.STUDIES)
    for name in NAMES:
        c = studies.commands(name)
        assert c["toy"] == f"python -m tina.train -m +study={name}", name
        # the paper-scale command is the toy one plus groups and values, on SLURM; the price command prices it
        assert c["paper"].startswith(c["toy"] + " ") and c["paper"].endswith(" hydra/launcher=slurm"), name
        assert c["price"] == c["paper"].replace("tina.train", "tina.plan").removesuffix(" hydra/launcher=slurm"), name


def _jobs(cmd: str):
    argv = shlex.split(cmd)[3:]  # python -m tina.X
    assert argv[0] == "-m"
    return [(o, plan.job_config(cfg)) for o, cfg in plan.sweep_jobs(argv[1:], True)]


@pytest.mark.parametrize("name", NAMES)
def test_study_composes_at_toy_scale_and_every_job_validates(name):
    jobs = _jobs(studies.commands(name)["toy"])
    assert len(jobs) >= 2
    for overrides, tc in jobs:
        assert f"+study={name}" in overrides
        assert tc.model.name_or_path.startswith(str(ROOT / "tina" / "embedded")) and not tc.compute.use_vllm
    if name in ("early_stop", "transition_across_datasets"):
        assert all(tc.eval.after_training and tc.eval.checkpoints.value == "all" for _, tc in jobs)
    if name == "base_model":
        assert sorted(Path(tc.model.name_or_path).name for _, tc in jobs) == ["tiny", "tiny_direct"]


@pytest.mark.parametrize("name", NAMES)
def test_study_composes_and_is_priced_at_paper_scale(name, monkeypatch, capsys):
    monkeypatch.setenv("TINA_LIGHTEVAL_PYTHON", sys.executable)  # eval=gpu's lighteval, present on a cluster
    cmd = studies.commands(name)["price"]
    jobs = _jobs(cmd)
    assert all(tc.model.name_or_path in PAPER_MODELS and tc.compute.use_vllm for _, tc in jobs)
    if name == "base_model":
        assert {tc.model.name_or_path for _, tc in jobs} == set(PAPER_MODELS)
    if name == "transition_across_datasets":
        assert {tc.dataset.hub_id for _, tc in jobs} == {"knoveleng/open-rs", "agentica-org/DeepScaleR-Preview-Dataset",
                                                        "RUC-AIBOX/STILL-3-Preview-RL-Data"}
    assert plan.main([*shlex.split(cmd)[3:], "--json"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert len(p["jobs"]) == len(jobs) and p["complete"]
    assert all(r["num_gpus"] == 2 and r["usd"] > 0 for r in p["jobs"]) and p["total_usd"] > 0
    assert p["eval_usd"] > 0  # hub data sets hold nothing out: the verdicts come from the benchmarks, priced
    assert all(tc.eval.after_training and tc.eval.backend.value == "vllm" for _, tc in jobs)
    if name == "base_model":
        assert all(tc.eval.include_base for _, tc in jobs)  # the gain: after training minus before


# ----------------------------------------------------------------------------- the sentence, on synthetic outcomes
def test_outcome_rules():
    assert studies.outcome(2, 0, 0) == studies.AGREE
    assert studies.outcome(1, 0, 2) == studies.PARTLY
    assert studies.outcome(0, 1, 0) == studies.outcome(3, 1, 0) == studies.DISAGREE
    assert studies.outcome(0, 0, 3) == studies.INCONCLUSIVE


def _sweep(tmp_path: Path, name: str, arms: dict, *, rng, n=300, base_p=None) -> pd.DataFrame:
    """A study sweep on disk: per arm (override -> success probability, or (before, after)), one run's
    held-out outcomes on the same n problems."""
    sweep = tmp_path / name
    problem_ids = ids(n)
    p = rng.uniform(0.2, 0.8, n) if base_p is None else base_p
    runs = []
    for i, (override, q) in enumerate(arms.items()):
        before, after = q if isinstance(q, tuple) else (None, q)
        run = write_run(sweep / f"{i}_{override}", [override, f"+study={name}"],
                        rng.binomial(4, np.clip(p + after, 0, 1)) / 4, problem_ids, benchmark=None)
        if before is not None:
            rd.write_heldout(run, "base", {"problem_ids": problem_ids, "n_samples": 4,
                                           "accuracy": list(rng.binomial(4, np.clip(p + before, 0, 1)) / 4)})
        runs.append(str(run))
    return pd.DataFrame({"sweep": str(sweep), "run": runs, "transition_step": np.nan, "flops": 1e12})


def _one(df) -> tuple[studies.Finding, str]:
    ((_, name, f),) = studies.findings(df)
    return f, studies.sentence(studies.STUDIES[name].claim, f)


@pytest.mark.parametrize("shift, expected", [
    ({"lora.rank=4": -0.3, "lora.rank=64": -0.3}, studies.AGREE),
    ({"lora.rank=4": -0.3, "lora.rank=64": 0.0}, studies.PARTLY),
    ({"lora.rank=4": +0.3, "lora.rank=64": -0.3}, studies.DISAGREE),
    ({"lora.rank=4": 0.0, "lora.rank=64": 0.0}, studies.INCONCLUSIVE),
])
def test_rank_sentence_follows_the_verdicts(tmp_path, shift, expected):
    df = _sweep(tmp_path, "rank", {"lora.rank=32": 0.0, "lora.rank=16": 0.0, **shift}, rng=np.random.default_rng(0))
    f, text = _one(df)
    assert f.outcome == expected, text
    assert text.startswith("The paper claims that LoRA ranks 16-32 do best") and text.endswith(
        studies.AGREEMENT[expected] + ".")
    assert "rank=32 at" in text and "rank=16 (indistinguishable from it) inside the claim's range" in text
    assert list(f.table["rank"])[0] == "32 (baseline)" and "training FLOPs" in f.table


@pytest.mark.parametrize("shift, expected", [(-0.3, studies.AGREE), (+0.3, studies.DISAGREE), (0.0, studies.INCONCLUSIVE)])
def test_data_scaling_sentence(tmp_path, shift, expected):
    df = _sweep(tmp_path, "data_scaling", {"dataset.max_samples=16": 0.0, "dataset.max_samples=1024": shift},
                rng=np.random.default_rng(1))
    f, text = _one(df)
    assert f.outcome == expected and text.endswith(studies.AGREEMENT[expected] + "."), text
    assert "samples=16 at" in text


@pytest.mark.parametrize("distilled, direct, expected", [
    ((0.0, 0.3), (0.0, 0.0), studies.AGREE),      # only the distilled base gains
    ((0.0, 0.0), (0.0, 0.3), studies.DISAGREE),   # the non-distilled one gains more
    ((0.0, 0.2), (0.0, 0.2), studies.INCONCLUSIVE),
])
def test_base_model_sentence_compares_the_gains(tmp_path, distilled, direct, expected):
    df = _sweep(tmp_path, "base_model", {"model=tiny": distilled, "model=tiny_direct": direct},
                rng=np.random.default_rng(2))
    f, text = _one(df)
    assert f.outcome == expected, text
    assert "the distilled base gains" in text and text.endswith(studies.AGREEMENT[expected] + ".")
    assert list(f.table["base"]) == ["tiny", "tiny_direct", "distilled − non-distilled"]


def _checkpoint_run(run: Path, name: str, accs: dict, rng, n=300) -> str:
    """A run evaluated at every checkpoint: {step: success probability shift}."""
    (run / rd.HYDRA).mkdir(parents=True)
    (run / rd.HYDRA / rd.HYDRA_OVERRIDES).write_text(f"- +study={name}\n- train.seed=42\n")
    p = np.random.default_rng(7).uniform(0.2, 0.8, n)
    for step, shift in accs.items():
        pp = list(rng.binomial(4, np.clip(p + shift, 0, 1)) / 4)
        write(result_path(run, f"checkpoint-{step}", "toy"),
              {"benchmark": "toy", "checkpoint": f"checkpoint-{step}", "step": step, "pass@1": float(np.mean(pp)),
               "n_samples": 4, "seeds": [0], "per_problem": pp, "problem_ids": ids(n)})
    return str(run)


@pytest.mark.parametrize("transition, late, expected", [
    (20, -0.3, studies.AGREE),          # at the transition (step 20) better than the final checkpoint
    (20, +0.3, studies.DISAGREE),       # training on past it helped
    (20, 0.0, studies.INCONCLUSIVE),    # no difference the data can see
    (np.nan, -0.3, studies.INCONCLUSIVE),  # no transition: nothing to stop at
])
def test_early_stop_sentence(tmp_path, transition, late, expected):
    rng = np.random.default_rng(3)
    runs = [_checkpoint_run(tmp_path / "early_stop" / f"{i}_seed", "early_stop", {10: 0.0, 20: 0.1, 30: 0.1 + late}, rng)
            for i in range(2)]
    df = pd.DataFrame({"sweep": str(tmp_path / "early_stop"), "run": runs, "transition_step": transition})
    f, text = _one(df)
    assert f.outcome == expected, text
    assert text.startswith("The paper claims that the best checkpoint sits at or just before the format transition")
    if np.isnan(transition):
        assert "no transition detected in any of its 2 runs" in text
    else:
        assert "a transition in 2 of 2 runs" in text and set(f.table["stop ckpt"]) == {20}


def test_transition_missing_on_one_data_set_disagrees(tmp_path):
    rng = np.random.default_rng(4)
    runs = []
    for seed in (0, 1):
        run = Path(_checkpoint_run(tmp_path / "t" / f"{seed}_ds", "transition_across_datasets", {10: 0.0, 20: 0.1, 30: -0.2}, rng))
        (run / rd.HYDRA / rd.HYDRA_OVERRIDES).write_text(f"- +study=transition_across_datasets\n- dataset.seed={seed}\n")
        runs.append(str(run))
    df = pd.DataFrame({"sweep": str(tmp_path / "t"), "run": runs, "transition_step": [20, np.nan]})
    f, text = _one(df)
    assert f.outcome == studies.DISAGREE and "a transition on 1 of 2 data sets (none on dataset.seed=1)" in text, text
    df["transition_step"] = [20, 20]
    f, text = _one(df)
    assert f.outcome == studies.AGREE, text


def test_a_sweep_that_is_no_study_has_no_section(tmp_path):
    df = _sweep(tmp_path, "rank", {"lora.rank=32": 0.0, "lora.rank=8": 0.0}, rng=np.random.default_rng(5))
    for run in df["run"]:  # the same outcomes, without the +study mark
        (Path(run) / rd.HYDRA / rd.HYDRA_OVERRIDES).write_text("- lora.rank=8\n")
    assert studies.findings(df) == [] and studies.section(df) == []


# ----------------------------------------------------------------------------- end to end, at toy scale
def test_rank_study_end_to_end_on_the_toy(tmp_path):
    """`+study=rank`, narrowed to two ranks and 3 steps (~1-2 min on 2 shared cores): real training, then
    the report, whose study section ends in the sentence the comparison's own verdict decides."""
    from analysis import compare

    sweep = tmp_path / "sweep"
    run_cli("tina.train", "-m", "+study=rank", "lora.rank=8,32", "train.max_steps=3", "dataset.eval_size=48",
            f"hydra.sweep.dir={sweep}")
    run_cli("analysis.report", str(sweep), "--no-cache")
    md = (sweep / "report.md").read_text()
    assert "## Study rank: LoRA rank: training FLOPs against accuracy" in md
    section = md.split("## Study rank")[1].split("\n## ")[0].strip()
    last = section.splitlines()[-1]
    assert last.startswith("The paper claims that LoRA ranks 16-32 do best")
    (c,) = [c for s in compare.compare([sweep]) for c in s["comparisons"]]  # rank 8 against rank 32
    expected = {"worse": studies.AGREE, "better": studies.DISAGREE, "indistinguishable": studies.INCONCLUSIVE}[c["verdict"]]
    assert last.endswith(studies.AGREEMENT[expected] + "."), (last, c)
    assert f"rank=8 {c['verdict'].replace('indistinguishable', 'indistinguishable from')}" in last


def test_a_misspelt_study_is_refused_in_one_line_naming_the_studies(tmp_path):
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "tina.train", "-m", "+study=rnak", f"hydra.sweep.dir={tmp_path}/s"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and not (tmp_path / "s").exists()
    assert f"study=rnak: no such option; study has: {', '.join(NAMES)}" in proc.stderr
