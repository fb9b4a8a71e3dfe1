"""Training data as TRL wants it: a `prompt` conversation and the gold `solution` per row.

Every data set, the embedded toy task included, goes through `to_row`, so the reward functions
see one schema whatever the source. Hub data sets differ only in which field holds the problem
and how the gold answer is stored (`ANSWER_FORMATS`); both are config, not code.
"""

from __future__ import annotations

from pathlib import Path

import datasets

from tina.config import ConfigError, DatasetConfig
from tina.prompts import ANSWER_FORMATS


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
