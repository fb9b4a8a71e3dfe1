"""tina.evaluate and tina.evaluate.testsets: benchmark definitions on rows in their real schemas, the
in-process backend end to end on the embedded tiny model, checkpoint selection, the lighteval/vLLM
invocation with the paper's settings, results files read back through analysis.collect_evals, and config
errors that name the key and what is allowed. lighteval itself runs in tests/test_lighteval.py; the
vLLM backend only where CUDA and a lighteval[vllm] environment exist (TINA_LIGHTEVAL_PYTHON).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from tests.helpers import FIXTURES, TINY_MODEL, lora_run, needs_tiny
from tina.evaluate import testsets as bm
from tina.config import ConfigError
from tina.evaluate import evaluate_run
from tina.evaluate import lighteval_run as lr
from tina.evaluate.checkpoints import select
from tina.evaluate.config import check_override_keys, to_eval_config, validate
from tina.evaluate.results import read_results, result_path
from tina import toy
from tina.run_dir import problem_id

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
LIGHTEVAL_PYTHON = os.environ.get("TINA_LIGHTEVAL_PYTHON")

# The right answer of each fixture row, as a model would box it.
ANSWERS = {
    "aime24": ["55", "16"],
    "aime25": ["15", "14"],
    "amc23": ["1024", "27"],
    "math_500": ["\\frac{3}{4}", "\\left( 3, \\frac{\\pi}{2} \\right)"],
    "minerva": ["10", "9"],
}


def compose_eval(overrides: list[str]):
    check_override_keys(overrides)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("evaluate", overrides=overrides)


# --------------------------------------------------------------------------- benchmark definitions
@pytest.mark.parametrize("name", sorted(ANSWERS))
def test_math_benchmark_parses_real_schema(name):
    bench = bm.get(name)
    path = FIXTURES / "benchmarks" / f"{name}.jsonl"
    rows = bm.load_rows(bench, path=str(path))
    examples = [bm.build_example(bench, r) for r in rows]
    for row, ex, answer in zip(rows, examples, ANSWERS[name]):
        assert row[bench.problem_field].strip() in ex["query"] and "\\boxed{ANSWER}" in ex["query"]
        assert ex["choices"] == [ex["gold"]] and ex["gold_index"] == 0
        right = f"Thinking done.\nTherefore, the final answer is: $\\boxed{{{answer}}}$. I hope it is correct"
        wrong = "Therefore, the final answer is: $\\boxed{98765}$."
        correct, unread = bm.score(bench, [right, wrong], [ex["gold"], ex["gold"]])
        assert correct == [1.0, 0.0] and unread == 0, (name, ex["gold"])
    assert bm.messages(examples[0], bm.system_prompt(bench))[0]["role"] == "user"  # no system prompt


def test_gpqa_shuffles_choices_to_a_letter_gold():
    bench = bm.get("gpqa:diamond")
    rows = bm.load_rows(bench, path=str(FIXTURES / "benchmarks" / "gpqa_diamond.jsonl"))
    examples = [bm.build_example(bench, r) for r in rows]
    assert examples == [bm.build_example(bench, r) for r in rows]  # same order every time
    for row, ex in zip(rows, examples):
        gold = ex["gold"]
        assert ex["choices"] == list("ABCD") and gold == "ABCD"[ex["gold_index"]]
        assert f"\n{gold}) {row['Correct Answer']}" in ex["query"] and row["Question"] in ex["query"]
        for i in (1, 2, 3):
            assert row[f"Incorrect Answer {i}"] in ex["query"]
        other = next(c for c in "ABCD" if c != gold)
        texts = [f"Reasoning...\nAnswer: {gold}", f"\\boxed{{{gold}}}", f"Answer: {other}", "no idea"]
        assert bm.score(bench, texts, [gold] * 4)[0] == [1.0, 1.0, 0.0, 0.0]
    # the shuffle moves the gold around rather than always to one letter
    golds = {bm.shuffled_choices({**rows[0], "Question": f"Q{i}"})[1] for i in range(40)}
    assert golds == {0, 1, 2, 3}


def test_toy_benchmark_is_the_training_heldout_split():
    from omegaconf import OmegaConf

    from tina.config import DatasetConfig
    from tina.data import load_eval

    bench = bm.get("toy")
    examples = [bm.build_example(bench, r) for r in bm.load_rows(bench, toy_size=20, toy_seed=0)]
    dataset = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DatasetConfig), {"eval_size": 20}))
    heldout = load_eval(dataset)
    assert [bm.messages(e, bm.system_prompt(bench)) for e in examples] == list(heldout["prompt"])
    assert [e["gold"] for e in examples] == list(heldout["solution"])


def test_every_benchmark_is_defined_once_with_its_hub_source():
    assert set(bm.PAPER_BENCHMARKS) | {"toy"} == set(bm.BENCHMARKS)
    hub = {name: (b.hub_id, b.config) for name, b in bm.BENCHMARKS.items()}
    assert hub["aime24"] == ("HuggingFaceH4/aime_2024", None) and hub["aime25"] == ("yentinglin/aime_2025", None)
    assert hub["amc23"] == ("knoveleng/AMC-23", None) and hub["math_500"] == ("HuggingFaceH4/MATH-500", None)
    assert hub["minerva"] == ("knoveleng/Minerva-Math", None)
    assert hub["gpqa_diamond"] == ("Idavidrein/gpqa", "gpqa_diamond")
    assert len({b.lighteval_task for b in bm.BENCHMARKS.values()}) == len(bm.BENCHMARKS)
    with pytest.raises(ValueError, match="allowed"):
        bm.get("aime42")


def test_unreachable_hub_names_the_data_path_override(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = "from tina.evaluate import testsets as bm; bm.load_rows(bm.get('aime24'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode != 0
    assert "eval.data_path.aime24" in out.stderr and "HuggingFaceH4/aime_2024" in out.stderr


# --------------------------------------------------------------------------- in-process backend, end to end
@needs_tiny
def test_cpu_backend_end_to_end_on_the_tiny_model(tmp_path):
    run = lora_run(tmp_path, steps=(2,), final_step=3)
    cfg = {"checkpoints": "all", "include_base": True, "toy_size": 16, "n_samples": 2, "seeds": [0, 1]}
    records = evaluate_run(run, cfg)
    assert sorted((r["checkpoint"], r["step"]) for r in records) == [("adapter", 3), ("base", 0), ("checkpoint-2", 2)]
    for r in records:
        path = result_path(run, r["checkpoint"], "toy")
        on_disk = json.loads(path.read_text())
        assert on_disk["pass@1"] == r["pass@1"] and on_disk["benchmark"] == "toy"
        assert 0.0 <= r["pass@1"] <= 1.0 and len(r["runs"]) == 4 and r["n_problems"] == 16
        assert r["pass@1"] == pytest.approx(sum(r["runs"]) / 4)
        assert r["pass@1"] == pytest.approx(sum(r["per_problem"]) / 16)
        assert isinstance(r["pass@1_std"], float) and r["n_samples"] == 2 and r["seeds"] == [0, 1]
        assert r["backend"] == "transformers" and r["wall_seconds"] > 0 and 0.0 <= r["extra"]["format"] <= 1.0
        assert r["settings"]["temperature"] == 0.6 and r["settings"]["top_p"] == 0.95
        assert (r["adapter"] is None) == (r["checkpoint"] == "base")
        # which problem each outcome is: the toy split's problems, as training's held-out split names them
        assert r["problem_ids"] == [problem_id(row["problem"]) for row in toy.rows("test", 16, 0)]
    # LoRA weights were applied: the adapter's completions differ from the base's somewhere
    per = {r["checkpoint"]: r for r in records}
    assert per["adapter"]["runs"] != per["base"]["runs"] or per["adapter"]["extra"] != per["base"]["extra"]

    # read back by the analysis code that reports them
    from analysis import collect_evals

    df = collect_evals(run)
    assert sorted(df["checkpoint"]) == ["adapter", "base", "checkpoint-2"] and set(df["benchmark"]) == {"toy"}
    got = {(c, b): p for c, b, p in zip(df["checkpoint"], df["benchmark"], df["pass@1"])}
    assert got == {(r["checkpoint"], "toy"): r["pass@1"] for r in records}
    assert len(read_results(run)) == 3

    # a second call finds the files and redoes nothing; changed settings redo
    again = evaluate_run(run, cfg)
    assert [r["created_at"] for r in again] == [r["created_at"] for r in records]
    changed = evaluate_run(run, {**cfg, "checkpoints": "last", "include_base": False, "seeds": [5]})
    assert len(changed) == 1 and changed[0]["checkpoint"] == "adapter" and changed[0]["seeds"] == [5]
    assert changed[0]["pass@1_std"] is not None  # 2 samples x 1 seed: still two runs


@needs_tiny
def test_cli_evaluates_a_model_on_its_own(tmp_path):
    out = tmp_path / "base-eval"
    cmd = [sys.executable, "-m", "tina.evaluate", f"model={TINY_MODEL}", f"output_dir={out}",
           "eval.toy_size=8", "eval.n_samples=1", "eval.seeds=[0]"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "40"})  # a narrow shell's, inherited by a piped command
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Piped, the table is whole: no cell cut to fit a terminal it is not printed on.
    header = next(line for line in proc.stdout.splitlines() if "checkpoint" in line)
    assert "samples x seeds" in header and "…" not in proc.stdout, proc.stdout
    record = json.loads((out / "eval" / "base" / "toy.json").read_text())
    assert record["step"] is None and record["pass@1_std"] is None and record["model"] == str(TINY_MODEL)
    assert (out / ".hydra" / "config.yaml").is_file() and (out / "evaluate.log").is_file()


@needs_tiny
def test_cli_on_a_run_leaves_the_training_hydra_files_alone(tmp_path):
    run = lora_run(tmp_path, steps=(), final_step=2)
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("training: config\n")
    cmd = [sys.executable, "-m", "tina.evaluate", f"run_dir={run}",
           "eval.toy_size=8", "eval.n_samples=1", "eval.seeds=[0]"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / ".hydra" / "config.yaml").read_text() == "training: config\n"
    assert (run / "eval" / ".hydra" / "config.yaml").is_file() and (run / "eval" / "adapter" / "toy.json").is_file()


# --------------------------------------------------------------------------- checkpoint selection
def _write_metrics(run: Path, df) -> None:
    with open(run / "metrics.jsonl", "w") as f:
        for rec in df.to_dict("records"):
            f.write(json.dumps({k: (int(v) if k == "step" else float(v)) for k, v in rec.items()}) + "\n")


def test_best_is_the_checkpoint_at_or_before_the_phase_transition(tmp_path):
    from tina.phase import detect
    from tests.helpers import curve

    df, truth = curve(0, n=300, frac=0.5)
    run = lora_run(tmp_path, steps=range(50, 301, 50), final_step=300, lora=False)
    _write_metrics(run, df)
    targets, info = select(run, "best", include_base=False)
    found = detect(run)["step"]
    assert found is not None and abs(found - truth) <= 15
    assert [t.name for t in targets] == [f"checkpoint-{found // 50 * 50}"]
    assert info["mode"] == "best" and info["phase_step"] == found and "fallback" not in info

    every, _ = select(run, "all", include_base=True)
    assert [t.name for t in every] == ["base"] + [f"checkpoint-{s}" for s in range(50, 301, 50)]  # adapter = 300
    assert [t.name for t in select(run, "last", include_base=False)[0]] == ["checkpoint-300"]


def test_best_without_a_transition_falls_back_to_the_last_weights(tmp_path):
    from tests.helpers import curve

    df, truth = curve(1, n=300, kind="plateau")
    assert truth is None
    run = lora_run(tmp_path, steps=(100, 200), final_step=250, lora=False)
    _write_metrics(run, df)
    targets, info = select(run, "best", include_base=False)
    assert [t.name for t in targets] == ["adapter"] and [t.step for t in targets] == [250]
    assert info["phase_step"] is None and "no phase transition" in info["fallback"]


def test_a_run_without_weights_is_refused(tmp_path):
    run = lora_run(tmp_path, steps=(), final_step=None, lora=False)
    with pytest.raises(ConfigError, match="run_dir"):
        select(run, "last", include_base=False)


# --------------------------------------------------------------------------- lighteval backends: the invocation
def test_lighteval_invocation_has_the_papers_settings(tmp_path):
    cfg = compose_eval(["run_dir=x", "eval=gpu", f"eval.lighteval_python={sys.executable}"])
    ec = to_eval_config(cfg.eval)
    assert ec.benchmarks == list(bm.PAPER_BENCHMARKS) and ec.backend.value == "vllm"
    args = lr.model_args("model", ec, seed=ec.seeds[0], system=None, cache_dir="C")["model_parameters"]
    assert args["dtype"] == "bfloat16" and args["max_model_length"] == 32768 and args["model_name"] == "model"
    assert args["override_chat_template"] is True and args["system_prompt"] is None  # chat template, no system prompt
    assert args["cache_dir"] == "C"
    gen = args["generation_parameters"]
    assert gen == {"temperature": 0.6, "top_p": 0.95, "max_new_tokens": 32768, "seed": 0}
    tasks = [bm.get(b).lighteval_task for b in ec.benchmarks]
    cmd = lr.command(ec, tmp_path / "model_args.yaml", tasks, tmp_path / "out")
    assert cmd[:5] == [sys.executable, "-m", "lighteval", "vllm", str(tmp_path / "model_args.yaml")]
    assert cmd[5] == "tina_aime24|0,tina_aime25|0,tina_amc23|0,tina_math_500|0,tina_minerva|0,tina_gpqa_diamond|0"
    assert cmd[cmd.index("--custom-tasks") + 1] == str(lr.TASKS_FILE) and lr.TASKS_FILE.is_file()
    assert cmd[cmd.index("--output-dir") + 1] == str(tmp_path / "out")
    assert "--no-remove-reasoning-tags" in cmd  # the paper's lighteval matched on the whole completion
    # the YAML lighteval reads is what was built (paths and prompts with commas survive)
    path = tmp_path / "args.yaml"
    path.write_text(yaml.safe_dump(lr.model_args("a,b", ec, seed=3, system="x, y", cache_dir="C")))
    assert yaml.safe_load(path.read_text())["model_parameters"]["system_prompt"] == "x, y"
    # the same evaluation where vLLM is absent: lighteval's accelerate backend, same sampling
    ec = to_eval_config({**cfg.eval, "backend": "accelerate"})
    args = lr.model_args("model", ec, seed=0, system=None, cache_dir="C")["model_parameters"]
    assert lr.command(ec, tmp_path / "a.yaml", tasks, tmp_path / "out")[3] == "accelerate"
    assert args["dtype"] == "float32" and args["device"] in ("cpu", "cuda") and "max_model_length" not in args
    assert args["generation_parameters"] == {**gen, "top_k": 0}


def test_lighteval_results_are_parsed_per_sample():
    scores = lr.parse(FIXTURES / "lighteval", ["tina_toy", "tina_gpqa_diamond"], n_samples=2)
    assert scores == {"tina_toy": [0.25, 0.5], "tina_gpqa_diamond": [1.0, 0.5]}
    with pytest.raises(RuntimeError, match="tina_aime24"):
        lr.parse(FIXTURES / "lighteval", ["tina_aime24"], n_samples=2)


def test_examples_written_for_lighteval_carry_the_benchmark_logic(tmp_path):
    bench = bm.get("gpqa_diamond")
    rows = bm.load_rows(bench, path=str(FIXTURES / "benchmarks" / "gpqa_diamond.jsonl"))
    examples = [bm.build_example(bench, r) for r in rows]
    written = (lr.write_examples(tmp_path, examples) / "rows.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in written]
    assert rows == [{"query": e["query"], "choices": list("ABCD"), "gold_index": e["gold_index"]} for e in examples]


@pytest.mark.skipif(not (LIGHTEVAL_PYTHON and __import__("torch").cuda.is_available()),
                    reason="vllm backend: needs CUDA and TINA_LIGHTEVAL_PYTHON (scripts/lighteval-env.sh --gpu)")
@needs_tiny
def test_vllm_backend_end_to_end(tmp_path):
    run = lora_run(tmp_path, steps=(), final_step=2)
    cfg = {"backend": "vllm", "benchmarks": ["toy"], "toy_size": 16, "n_samples": 2, "seeds": [0],
           "max_new_tokens": 32, "lighteval_python": LIGHTEVAL_PYTHON,
           "vllm": {"dtype": "float32", "max_model_length": 256, "gpu_memory_utilization": 0.3}}
    (record,) = evaluate_run(run, cfg)
    assert record["backend"] == "vllm" and len(record["runs"]) == 2 and 0 <= record["pass@1"] <= 1
    assert not (run / "eval" / "adapter" / "lighteval" / lr.MODEL).exists()  # merged weights removed after the run


# --------------------------------------------------------------------------- config
def test_eval_groups_compose_and_validate(tmp_path):
    run = lora_run(tmp_path, steps=(), final_step=None, lora=False)
    cpu = validate(compose_eval([f"run_dir={run}"]))
    assert cpu.eval.backend.value == "transformers" and cpu.eval.benchmarks == ["toy"] and cpu.output_dir == str(run)
    gpu_cfg = validate(compose_eval([f"run_dir={run}", "eval=gpu", f"eval.lighteval_python={sys.executable}",
                                     "eval.benchmarks=[aime24,gpqa:diamond]", "eval.checkpoints=best"]))
    assert gpu_cfg.eval.benchmarks == ["aime24", "gpqa_diamond"] and gpu_cfg.eval.checkpoints.value == "best"
    assert validate(compose_eval(["base_model=org/model"])).output_dir == "outputs/base/org_model"


@pytest.mark.parametrize(
    "overrides, key, allowed",
    [
        (["eval.benchmarks=[aime24,aime42]"], "eval.benchmarks", "math_500"),
        (["eval.n_samples=0"], "eval.n_samples", "[1, inf)"),
        (["eval.seeds=[]"], "eval.seeds", "at least one seed"),
        (["eval.top_p=1.5"], "eval.top_p", "(0, 1]"),
        (["eval=gpu"], "eval.lighteval_python", "scripts/lighteval-env.sh --gpu"),
        (["eval.backend=accelerate"], "eval.lighteval_python", "scripts/lighteval-env.sh`"),
        (["eval.accelerate.device=tpu"], "eval.accelerate.device", "auto, cpu, cuda"),
        (["eval=gpu", "eval.lighteval_python=/usr/bin/env", "eval.vllm.gpu_memory_utilization=2"],
         "eval.vllm.gpu_memory_utilization", "(0, 1]"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(tmp_path, monkeypatch, overrides, key, allowed):
    monkeypatch.delenv("TINA_LIGHTEVAL_PYTHON", raising=False)  # eval=gpu reads it as the default
    run = lora_run(tmp_path, steps=(), final_step=None, lora=False)
    with pytest.raises(ConfigError) as e:
        validate(compose_eval([f"run_dir={run}", *overrides]))
    assert str(e.value).startswith(key) and allowed in str(e.value)


def test_bad_names_are_refused_naming_the_choices(tmp_path):
    with pytest.raises(ConfigError, match=r"eval.chekpoints: unknown key \(did you mean eval.checkpoints\?\)"):
        check_override_keys(["eval.chekpoints=all"])
    with pytest.raises((HydraException, OmegaConfBaseException)) as e:
        compose_eval(["run_dir=x", "eval.checkpoints=bestest"])
    assert "eval.checkpoints" in str(e.value) and "[all, last, best]" in str(e.value.__cause__)
    with pytest.raises(ConfigError, match="run_dir: give exactly one"):
        validate(compose_eval([]))
    with pytest.raises(ConfigError, match="run_dir: .* not a directory"):
        validate(compose_eval([f"run_dir={tmp_path / 'nope'}"]))
    with pytest.raises(ConfigError, match="eval.data_path.aime42: unknown benchmark"):
        to_eval_config({"data_path": {"aime42": "x.jsonl"}})


def test_cli_without_a_run_or_model_says_what_to_give():
    proc = subprocess.run([sys.executable, "-m", "tina.evaluate"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "run_dir=RUN" in proc.stderr and "model=MODEL" in proc.stderr
