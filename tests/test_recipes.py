"""Every paper recipe composes to the paper's values (the values in each experiment header), and every data set's field
mapping holds on rows in that data set's real schema."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import compose_cfg, options
from tina.config import ConfigError, validate
from tina.data import load_train
from tina.rewards import get_reward
from tina.train import grpo_kwargs

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"

FA = {"format": 1.0, "accuracy": 2.0}
COS = {"format": 1.0, "cosine": 2.0}
ALL = dict.fromkeys(["accuracy", "format", "tag_count", "length", "reasoning_steps", "cosine", "repetition"], 1.0)
FORMAT_ONLY = dict.fromkeys(["format", "tag_count", "length", "reasoning_steps", "repetition"], 1.0)

# experiment: (data set, rewards, G, max_steps, stop_at_step, save_steps, algorithm, extra checks)
PAPER = {
    "tina_still3": ("still3", {"length": 1.0, "accuracy": 2.0}, 4, 7500, 3750, 10, "grpo", {}),
    "tina_deepscaler": ("deepscaler", FA, 4, 11000, 5500, 100, "grpo", {}),
    "tina_ii_thought": ("ii_thought", FA, 4, 13320, 6660, 100, "grpo", {}),
    "tina_open_rs1": ("open_rs1", FA, 4, 5000, 2400, 100, "grpo", {}),
    "tina_open_rs2": ("open_rs2", FA, 6, 1500, 850, 50, "grpo", {}),
    "tina_open_rs3": ("open_rs3", COS, 6, 1500, 850, 50, "grpo", {"cosine_max_len": 3584}),
    "tina_open_rs3_dr_grpo": ("open_rs3", COS, 6, 1500, 850, 50, "dr_grpo", {"cosine_max_len": 3584}),
    "tina_open_rs3_long_completion": ("open_rs3", COS, 6, 1500, 850, 50, "dr_grpo",
                                      {"max_completion_length": 8960, "vllm_mem": 0.7, "cosine_max_len": 3584,
                                       "vllm_max_len": 9472}),
    "tina_open_rs3_format_only": ("open_rs3", FORMAT_ONLY, 6, 1500, 850, 50, "grpo", {}),
    "tina_open_r1": ("open_r1", ALL, 8, None, None, 100, "grpo", {"cosine_max_len": 3584, "vllm_max_len": None}),
    "tina_open_thoughts": ("open_thoughts", ALL, 8, None, None, 100, "grpo",
                           {"cosine_max_len": 3584, "vllm_mem": 0.6, "vllm_max_len": None}),
    "tina_limr": ("limr", FA, 4, 360, 180, 10, "grpo", {}),
    "tina_limr_lr5e-7": ("limr", FA, 4, 360, 180, 10, "grpo", {"lr": 5e-7}),
    "tina_limr_lr5e-6": ("limr", FA, 4, 360, 180, 10, "grpo", {"lr": 5e-6}),
    **{f"tina_limr_rank{r}": ("limr", FA, 4, 360, 180, 50, "grpo", {"rank": r}) for r in (4, 8, 16, 64)},
}


# Not the paper's: the embedded settings' experiments (tests/test_transition.py checks them).
EMBEDDED = {"toy_transition"}


def test_every_experiment_file_is_in_the_table():
    assert set(options("experiment")) == set(PAPER) | EMBEDDED


@pytest.mark.parametrize("experiment", sorted(PAPER))
def test_experiment_composes_the_papers_recipe(experiment, tmp_path):
    dataset, rewards, G, max_steps, stop, save, algorithm, extra = PAPER[experiment]
    tc = validate(compose_cfg([f"experiment={experiment}", f"train.output_dir={tmp_path}"]))
    kw = grpo_kwargs(tc, tmp_path)

    # Shared by every recipe.
    assert tc.model.name_or_path == "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
    assert tc.model.dtype.value == "bfloat16" and "<think>" not in tc.model.chat_template.split("add_generation_prompt %}")[-1]
    rank = extra.get("rank", 32)
    assert (tc.lora.rank, tc.lora.alpha, tc.lora.dropout) == (rank, 4 * rank, 0.05)
    assert set(tc.lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert kw["learning_rate"] == extra.get("lr", 1e-6)
    assert kw["lr_scheduler_type"] == "cosine_with_min_lr" and kw["lr_scheduler_kwargs"] == {"min_lr_rate": 0.1}
    assert kw["warmup_steps"] == 0.1 and kw["temperature"] == 0.7 and kw["beta"] == 0.04 and kw["seed"] == 42
    assert kw["logging_steps"] == 1 and kw["bf16"] and kw["activation_checkpointing"] and kw["use_vllm"]
    assert kw["vllm_mode"] == "colocate" and tc.algorithm.max_prompt_length == 512
    assert kw["max_completion_length"] == extra.get("max_completion_length", 3584)
    assert kw["vllm_gpu_memory_utilization"] == extra.get("vllm_mem", 0.4)
    assert kw["vllm_max_model_length"] == extra.get("vllm_max_len", 4608)
    # 8 prompts x G completions a step on 2 GPUs, G completions per device micro-batch (the paper's layout).
    assert tc.compute.num_processes == 2 and kw["per_device_train_batch_size"] == G
    assert kw["per_device_train_batch_size"] * kw["gradient_accumulation_steps"] * 2 == 8 * G

    # Per recipe.
    assert tc.dataset.name == dataset and kw["num_generations"] == G
    assert {n: s.weight for n, s in tc.reward.funcs.items()} == rewards
    assert kw["reward_weights"] == list(rewards.values())
    if "cosine_max_len" in extra:
        assert tc.reward.funcs["cosine"].params["max_len"] == extra["cosine_max_len"]
    assert (tc.train.max_steps, tc.train.stop_at_step, tc.train.save_steps) == (max_steps, stop, save)
    assert kw["max_steps"] == (max_steps or -1)
    # Dr.GRPO reaches the trainer as Dr.GRPO: the paper's misspelt key cannot happen here.
    want = {"grpo": ("grpo", "group"), "dr_grpo": ("dr_grpo", "none")}[algorithm]
    assert (kw["loss_type"], kw["scale_rewards"]) == want


# data set -> (fixture file, the gold answers its rows hold)
DATASETS = {
    "still3": ("still3", ["1", "\\frac{7}{8}"]),
    "deepscaler": ("deepscaler", ["1024", "5\\sqrt{2}"]),
    "open_rs1": ("open_rs", ["7", "4\\pi"]),
    "open_rs2": ("open_rs", ["7", "4\\pi"]),
    "open_rs3": ("open_rs", ["7", "4\\pi"]),
    "limr": ("limr", ["6", "\\frac{9}{2}"]),
    "open_r1": ("open_r1", ["51", "5"]),
    "open_thoughts": ("open_thoughts", ["12", "10"]),
    "ii_thought": ("ii_thought", ["55", "\\frac{1}{4}"]),
}


def test_every_hub_data_set_has_a_fixture():
    assert set(DATASETS) == set(options("dataset")) - {"toy", "toy_sum"}  # the embedded ones need no fixture


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_field_mapping_on_rows_in_the_real_schema(name, tmp_path):
    fixture, golds = DATASETS[name]
    tc = validate(compose_cfg([f"dataset={name}", f"dataset.path={FIXTURES / fixture}.jsonl",
                               f"train.output_dir={tmp_path}"]))
    ds = load_train(tc.dataset)
    assert sorted(ds.column_names) == ["prompt", "solution"] and len(ds) == len(golds)
    accuracy = get_reward("accuracy")
    for row, gold in zip(ds, golds):
        system, user = row["prompt"]
        assert system["role"] == "system" and "<think>" in system["content"]
        assert user["role"] == "user" and len(user["content"]) > 10
        right = f"<think>\nwork\n</think>\n<answer>\n\\boxed{{{gold}}}\n</answer>"
        wrong = "<think>\nwork\n</think>\n<answer>\n\\boxed{-12345}\n</answer>"
        assert accuracy([right, wrong], solution=[row["solution"]] * 2) == [1.0, 0.0], row["solution"]


def test_open_rs_prompt_asks_for_boxed_and_others_for_newline_format(tmp_path):
    rs = validate(compose_cfg(["dataset=open_rs2", f"train.output_dir={tmp_path}"])).dataset.system_prompt
    r1 = validate(compose_cfg(["dataset=deepscaler", f"train.output_dir={tmp_path}"])).dataset.system_prompt
    assert "\\boxed{}" in rs and "<answer> </answer>" in rs
    assert "<think>\n...\n</think>\n<answer>\n...\n</answer>" in r1  # real newlines, as open-r1's YAML


def test_parquet_folder_loads_like_jsonl(tmp_path):
    import pandas as pd

    pd.read_json(FIXTURES / "ii_thought.jsonl", lines=True).to_parquet(tmp_path / "part-0.parquet")
    tc = validate(compose_cfg(["dataset=ii_thought", f"dataset.path={tmp_path}", f"train.output_dir={tmp_path}"]))
    assert load_train(tc.dataset)["solution"] == ["$55$", "$\\frac{1}{4}$"]


def test_unreachable_hub_names_the_local_path_override(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as on a cluster without hub access; fails without retries
    tc = validate(compose_cfg(["dataset=limr", f"train.output_dir={tmp_path}"]))
    with pytest.raises(ConfigError, match=r"dataset\.path="):
        load_train(tc.dataset)


def test_missing_local_path_is_a_clear_error(tmp_path):
    cfg = compose_cfg(["dataset=limr", f"dataset.path={tmp_path}/nope.jsonl", f"train.output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"^dataset\.path: no file or folder at .*nope\.jsonl$"):
        validate(cfg)  # refused with the config, before any job starts
    cfg.dataset.path = None
    dataset = validate(cfg).dataset
    dataset.path = f"{tmp_path}/nope.jsonl"  # vanished after the check: the loader says so too
    with pytest.raises(ConfigError, match=r"dataset\.path"):
        load_train(dataset)
