"""Training data as TRL wants it: a `prompt` conversation and the gold `solution` per row.

Every data set, the embedded toy task included, goes through `to_row`, so the reward functions
see one schema whatever the source. Hub data sets differ only in which field holds the problem
and how the gold answer is stored (`ANSWER_FORMATS`); both are config, not code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import datasets

from tina.config import ConfigError, DatasetConfig


# The paper's two system prompts (RECIPES.md), and the toy task's shortened one.
SYSTEM_PROMPTS = {
    # Open-RS data sets ask for \boxed{} and <think>/<answer> tags.
    "open_rs": (
        "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
        "The assistant first thinks about the reasoning process in the mind and then provides the user with "
        "the answer, and put your final answer within \\boxed{} . The reasoning process and answer are "
        "enclosed within <think> </think> and <answer> </answer> tags, respectively, i.e., "
        "<think> reasoning process here </think> <answer> answer here </answer>. "
        "Note that respond by English, NOT use other languages."
    ),
    # The other data sets ask for the exact newline-delimited format the format reward checks.
    "r1": (
        "You are a helpful AI Assistant that provides well-reasoned and detailed responses. You first think "
        "about the reasoning process as an internal monologue and then provide the user with the answer. "
        "Respond in the following format: <think>\n...\n</think>\n<answer>\n...\n</answer>"
    ),
}


def _register_toy_prompt() -> None:
    from tina.toy import SYSTEM_PROMPT

    SYSTEM_PROMPTS["toy"] = SYSTEM_PROMPT


def _ii_thought_answer(value: str) -> str:
    return f"${json.loads(value)['answer']['value']}$"


# How a raw gold field becomes a string math-verify parses.
ANSWER_FORMATS: dict[str, Callable[[str], str]] = {
    "as_is": lambda value: str(value),  # already LaTeX, or a worked solution whose \boxed{} is the gold
    "dollars": lambda value: f"${value}$",  # a bare answer such as "3/4"
    "ii_thought_json": _ii_thought_answer,  # II-Thought's JSON verification_info
}


_register_toy_prompt()


def _field(example: dict, path: str):
    """Read `a.b.0.c` style paths: II-Thought keeps its problem in messages[0].content."""
    value = example
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def to_row(example: dict, cfg: DatasetConfig) -> dict:
    problem = _field(example, cfg.problem_field)
    answer = ANSWER_FORMATS[cfg.answer_format](_field(example, cfg.answer_field))
    return {
        "prompt": [
            {"role": "system", "content": cfg.system_prompt},
            {"role": "user", "content": problem},
        ],
        "solution": answer,
    }


def _load_raw(cfg: DatasetConfig) -> datasets.Dataset:
    if cfg.path is not None:
        path = Path(cfg.path)
        files = sorted(path.glob("*.parquet")) + sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        if not files or not all(f.exists() for f in files):
            raise ConfigError(f"dataset.path: no JSONL or Parquet files at {cfg.path}")
        kind = "parquet" if files[0].suffix == ".parquet" else "json"
        return datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
    try:
        return datasets.load_dataset(cfg.hub_id, cfg.config_name, split=cfg.split)
    except Exception as e:  # the hub client raises many types when offline
        raise ConfigError(
            f"dataset.hub_id: could not load {cfg.hub_id!r} ({type(e).__name__}: {str(e)[:200]}). "
            f"Without hub access, download it elsewhere and pass dataset.path=/path/to/files "
            f"(JSONL or Parquet in the hub's schema)"
        ) from e


def load_train(cfg: DatasetConfig) -> datasets.Dataset:
    if cfg.answer_format not in ANSWER_FORMATS:
        raise ConfigError(f"dataset.answer_format: {cfg.answer_format!r}; allowed: {sorted(ANSWER_FORMATS)}")
    if cfg.hub_id is None and cfg.path is None:
        from tina.toy import rows

        raw = datasets.Dataset.from_list(rows("train", cfg.size, cfg.seed))
    else:
        raw = _load_raw(cfg)
    return raw.map(to_row, fn_kwargs={"cfg": cfg}, remove_columns=raw.column_names)


def load_eval(cfg: DatasetConfig) -> datasets.Dataset | None:
    """The held-out split; only the toy task has one (the paper evaluates on benchmarks)."""
    if cfg.hub_id is not None or cfg.path is not None or cfg.eval_size == 0:
        return None
    from tina.toy import rows

    return datasets.Dataset.from_list([to_row(r, cfg) for r in rows("test", cfg.eval_size, cfg.seed)])


def drop_long_prompts(ds: datasets.Dataset, tokenizer, max_tokens: int | None) -> datasets.Dataset:
    """TRL 1.16 no longer truncates prompts; a truncated maths problem is a wrong problem, so drop it."""
    if max_tokens is None:
        return ds

    def fits(example) -> bool:
        ids = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        return len(ids) <= max_tokens

    return ds.filter(fits)
