"""lighteval itself, run in its own environment (scripts/lighteval-env.sh, provisioned by the
`lighteval_python` fixture on first use), through tina's task file on the embedded model with
lighteval's accelerate backend: every benchmark definition (the six paper benchmarks from local
files in their hub schemas, and the toy task) scored per sample exactly as tina's own checker
scores the same completions; a checkpoint's results never come from another checkpoint's cache;
nothing is written into the base model's or an adapter's directory.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import FIXTURES, ROOT, TINY_MODEL, lora_run, needs_tiny, tree_digest
from tina.evaluate import testsets as bm
from tina import run_dir as rd
from tina.evaluate import evaluate_model, evaluate_run
from tina.evaluate import lighteval_run as lr

DATA = {name: str(FIXTURES / "benchmarks" / f"{name}.jsonl") for name in bm.PAPER_BENCHMARKS}
TOY_SIZE = 4


def config(python: str, **overrides) -> dict:
    """Few problems x 2 samples, one seed: each lighteval process is ~25 s, mostly its start-up."""
    return {"backend": "accelerate", "lighteval_python": python, "benchmarks": ["toy"], "toy_size": TOY_SIZE,
            "n_samples": 2, "seeds": [0], "max_new_tokens": 32, "batch_size": 16, "data_path": DATA, **overrides}


def run_details(root: Path, target: str, name: str, seed: int = 0) -> list[dict]:
    bench = bm.get(name)
    out = root / rd.EVAL / target / "lighteval" / lr.system_key(bm.system_prompt(bench)) / f"seed-{seed}"
    return lr.details(out, bench.lighteval_task, n_samples=2)


def examples(name: str) -> list[dict]:
    bench = bm.get(name)
    return [bm.build_example(bench, r) for r in bm.load_rows(bench, path=DATA.get(name), toy_size=TOY_SIZE)]


@needs_tiny
@pytest.mark.slow
def test_every_benchmark_through_lighteval_agrees_with_tinas_checker(tmp_path, lighteval_python):
    names = list(bm.PAPER_BENCHMARKS) + ["toy"]
    before = tree_digest(TINY_MODEL)
    started = time.time()
    records = evaluate_model(str(TINY_MODEL), tmp_path, config(lighteval_python, benchmarks=names))
    seconds = time.time() - started
    assert tree_digest(TINY_MODEL) == before  # the base was evaluated through links to its weights, never written
    assert sorted(r["benchmark"] for r in records) == sorted(names)
    agree = total = correct = 0
    for r in records:
        bench, exs = bm.get(r["benchmark"]), examples(r["benchmark"])
        per = run_details(tmp_path, "base", bench.name)
        assert [p["query"] for p in per] == [e["query"] for e in exs] and all(len(p["texts"]) == 2 for p in per)
        ours_runs = []
        for i in range(2):  # sample index: lighteval's sample_i against tina's scorer on the same texts
            ours, unread = bm.score(bench, [p["texts"][i] for p in per], [e["gold"] for e in exs])
            theirs = [p["scores"][i] for p in per]
            assert unread == 0
            assert ours == theirs, (bench.name, i, [p["texts"][i] for p in per], [e["gold"] for e in exs])
            agree += sum(a == b for a, b in zip(ours, theirs))
            total += len(ours)
            correct += sum(ours)
            ours_runs.append(statistics.fmean(ours))
        assert r["backend"] == "accelerate" and r["runs"] == pytest.approx(ours_runs)
        assert r["pass@1"] == pytest.approx(statistics.fmean(ours_runs))
        assert r["pass@1_std"] == pytest.approx(statistics.stdev(ours_runs))
        assert r["per_problem"] == pytest.approx([sum(p["scores"]) / 2 for p in per])
        assert r["settings"]["lighteval_version"] == "0.13.0" and r["n_problems"] == len(exs)
    assert correct > 0  # the toy task gives the checkers something to agree on besides zeros
    print(f"\nlighteval accelerate, one checkpoint x {len(names)} benchmarks (2 processes): {seconds:.0f} s; "
          f"lighteval and tina's checker agree on {agree}/{total} samples ({correct:.0f} correct)")


@needs_tiny
@pytest.mark.slow
def test_each_checkpoint_gets_its_own_answers_and_nothing_is_written_into_weights(tmp_path, lighteval_python,
                                                                                  monkeypatch):
    base = tmp_path / "base-model"
    shutil.copytree(TINY_MODEL, base)
    run = lora_run(tmp_path, steps=(2,), final_step=3)  # two LoRA adapters with different weights
    (run / rd.CONFIG).write_text(yaml.safe_dump({"model": {"name_or_path": str(base), "chat_template": None}}))
    home = tmp_path / "home"  # lighteval's default cache is ~/.cache/huggingface/lighteval
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    weights = {d: tree_digest(d) for d in (base, run / rd.CHECKPOINTS / "checkpoint-2", run / rd.ADAPTER)}

    records = evaluate_run(run, config(lighteval_python, checkpoints="all"))
    assert [r["checkpoint"] for r in records] == ["checkpoint-2", "adapter"]
    texts = {r["checkpoint"]: [p["texts"] for p in run_details(run, r["checkpoint"], "toy")] for r in records}
    # same config, same seed, same problems: only the weights differ, and so do the answers
    assert texts["checkpoint-2"] != texts["adapter"]

    # the last checkpoint again, alone and with a second seed: seed 0 gives exactly what it gave
    # right after checkpoint-2 (no answer came from checkpoint-2), seed 1 samples anew
    again = evaluate_run(run, config(lighteval_python, checkpoints="last", seeds=[0, 1], overwrite=True))
    assert [r["checkpoint"] for r in again] == ["adapter"]
    assert [p["texts"] for p in run_details(run, "adapter", "toy", seed=0)] == texts["adapter"]
    assert [p["texts"] for p in run_details(run, "adapter", "toy", seed=1)] != texts["adapter"]

    assert {d: tree_digest(d) for d in weights} == weights  # not a byte, link or directory added inside
    assert not (home / ".cache" / "huggingface" / "lighteval").exists()
    for target in ("checkpoint-2", "adapter"):
        work = run / rd.EVAL / target / "lighteval"
        assert not (work / lr.MODEL).exists() and not list(work.rglob("cache"))  # evaluated copies, caches: gone


@pytest.mark.slow
def test_lighteval_loads_our_tasks_and_scores_each_sample(tmp_path, lighteval_python):
    """The task file registers, reads the rows, and scores hand-written completions per sample."""
    toy = [bm.build_example(bm.get("toy"), r) for r in bm.load_rows(bm.get("toy"), toy_size=2)]
    gpqa = [bm.build_example(bm.get("gpqa_diamond"), r)
            for r in bm.load_rows(bm.get("gpqa_diamond"), path=str(FIXTURES / "benchmarks" / "gpqa_diamond.jsonl"))]
    spec = {"n_samples": 3, "max_new_tokens": 32, "tasks": [
        {"name": "tina_toy", "metric": "math", "data_dir": str(lr.write_examples(tmp_path / "toy", toy))},
        {"name": "tina_gpqa_diamond", "metric": "letter", "data_dir": str(lr.write_examples(tmp_path / "gpqa", gpqa))},
    ]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    # three samples per first problem: right (boxed), wrong, right (the prompt's "Answer:" form)
    toy_gold = toy[0]["gold"].strip("$")
    texts = {"tina_toy|0": [f"so \\boxed{{{toy_gold}}}", "\\boxed{98765}", f"Answer: {toy[0]['gold']}"],
             "tina_gpqa_diamond|0": [f"\\boxed{{{gpqa[0]['gold']}}}", "\\boxed{98765}", f"Answer: {gpqa[0]['gold']}"]}
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    probe = f"""
import json
from lighteval.models.model_output import ModelResponse
from lighteval.tasks.lighteval_task import LightevalTask
from lighteval.tasks.registry import Registry
tasks = Registry(tasks="tina_toy|0,tina_gpqa_diamond|0", custom_tasks={str(lr.TASKS_FILE)!r}).load_tasks()
LightevalTask.load_datasets(tasks)
texts = json.load(open({str(tmp_path / "texts.json")!r}))
out = {{}}
for name, task in tasks.items():
    docs = task.eval_docs()
    scores = task.metrics[0].compute_sample(doc=docs[0], model_response=ModelResponse(text=texts[name]))
    out[name] = [len(docs), task.num_samples, scores]
print(json.dumps(out))
"""
    env = {**os.environ, "TINA_LIGHTEVAL_SPEC": str(tmp_path / "spec.json"), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([lighteval_python, "-c", probe], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["tina_toy|0"][:2] == [2, [1, 3]] and got["tina_gpqa_diamond|0"][:2] == [2, [1, 3]]
    assert got["tina_toy|0"][2] == {"sample_0": 1.0, "sample_1": 0.0, "sample_2": 1.0}
    assert got["tina_gpqa_diamond|0"][2] == {"sample_0": 1.0, "sample_1": 0.0, "sample_2": 1.0}




def test_provisioning_fails_in_seconds_naming_what_is_missing(tmp_path):
    env = {**os.environ, "TINA_LIGHTEVAL_VENV": str(tmp_path / "venv"), "TINA_LIGHTEVAL_BASE_PYTHON": "python3.99"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "lighteval-env.sh")], capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode != 0 and "python3.99 not found" in proc.stderr and not proc.stdout
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "lighteval-env.sh"), "--cuda"], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "allowed: (none) | --gpu | --lock" in proc.stderr
