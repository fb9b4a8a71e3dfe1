"""Training data as TRL wants it: a `prompt` conversation and the gold `solution` per row.

Every data set, the embedded toy task included, goes through `_pairs`, so the reward functions
see one schema whatever the source. Hub data sets differ only in which field holds the problem
and how the gold answer is stored (`ANSWER_FORMATS`); both are config, not code.

Every row is checked before the model loads: a row without a problem or a gold answer would
otherwise train on nothing (or crash hours in), so the first bad row is refused with its file,
line or row index, and field (tina/data_files.py reads local files that way).
"""

from __future__ import annotations

import math
from typing import Iterable

import datasets

from tina import data_files
from tina.config import DatasetConfig
from tina.errors import ConfigError
from tina.data_files import MISSING
from tina.errors import DataError
from tina.prompts import ANSWER_FORMATS
from tina import toy

__all__ = ["DataError", "drop_long_prompts", "load_eval", "load_train"]


class _BadRow(Exception):
    """One row's field problem; `_pairs` adds where the row is."""


def _field(example: dict, path: str):
    """Read `a.b.0.c` style paths (II-Thought keeps its problem in messages[0].content); MISSING when absent."""
    if path in example:
        return example[path]
    value = example
    for part in path.split("."):
        try:
            value = value[int(part)] if isinstance(value, list) else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return MISSING
    return value


def _required(example: dict, key: str, path: str, types: tuple, kind: str):
    value = _field(example, path)
    if value is MISSING:
        has = ", ".join([str(k) for k, v in example.items() if k is not None and v is not MISSING][:12]) or "no fields"
        raise _BadRow(f"field {path!r} is missing ({key}={path}; the row has: {has})")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        raise _BadRow(f"field {path!r} is null ({key}={path})")
    if not isinstance(value, types) or isinstance(value, bool):
        raise _BadRow(f"field {path!r} must be {kind}, got {type(value).__name__} ({key}={path})")
    if isinstance(value, str) and not value.strip():
        raise _BadRow(f"field {path!r} is empty ({key}={path})")
    return value


def _pairs(source: str, rows: Iterable[tuple[str, dict]], cfg: DatasetConfig) -> tuple[list, list]:
    """(problems, gold answers) of rows; DataError naming the first bad row, and how many more there are."""
    problems, answers, first, bad = [], [], None, 0
    to_answer = ANSWER_FORMATS[cfg.answer_format]
    for where, example in rows:
        try:
            problem = _required(example, "dataset.problem_field", cfg.problem_field, (str,), "text")
            answer = _required(example, "dataset.answer_field", cfg.answer_field, (str, int, float), "text or a number")
            try:
                answer = to_answer(answer)
            except Exception as e:  # a format is any function of the raw value: anything it raises is a bad row
                raise _BadRow(f"field {cfg.answer_field!r} cannot be read as dataset.answer_format="
                              f"{cfg.answer_format} ({type(e).__name__}: {e})") from None
        except _BadRow as e:
            bad += 1
            first = first or f"{source} {where}: {e}"
            continue
        problems.append(problem)
        answers.append(answer)
    if bad:
        raise DataError(first + (f"; {bad} bad rows in all" if bad > 1 else ""))
    if not problems:
        raise DataError(f"{source}: no rows to train on")
    return problems, answers


def _dataset(problems: list, answers: list, cfg: DatasetConfig) -> datasets.Dataset:
    system = {"role": "system", "content": cfg.system_prompt}
    prompts = [[system, {"role": "user", "content": problem}] for problem in problems]
    return datasets.Dataset.from_dict({"prompt": prompts, "solution": answers})


def _hub_pairs(cfg: DatasetConfig, fields: data_files.Fields) -> tuple[list, list]:
    try:
        ds = datasets.load_dataset(cfg.hub_id, cfg.config_name, split=cfg.split)
    except Exception as e:  # the hub client raises many types when offline
        raise ConfigError(
            f"dataset.hub_id: could not load {cfg.hub_id!r} ({type(e).__name__}: {str(e)[:200]}). "
            f"Without hub access, download it elsewhere and pass dataset.path=/path/to/files "
            f"({data_files.ALLOWED} in the hub's schema)"
        ) from e
    source = f"dataset.hub_id: {cfg.hub_id} split {cfg.split}"
    batches = lambda columns: ds.select_columns(columns).with_format("arrow").iter(batch_size=10_000)  # noqa: E731
    return _pairs(source, data_files.arrow_rows(source, ds.column_names, batches, fields), cfg)


def _toy_pairs(split: str, size: int, cfg: DatasetConfig) -> tuple[list, list]:
    examples = toy.rows(split, size, cfg.seed, cfg.task)
    return _pairs(f"dataset (toy task, {split})", ((f"row index {i}", r) for i, r in enumerate(examples)), cfg)


def load_train(cfg: DatasetConfig) -> datasets.Dataset:
    """The training rows; DataError (a ConfigError) naming file, line or row, and field on bad data."""
    if cfg.answer_format not in ANSWER_FORMATS:
        raise ConfigError(f"dataset.answer_format: {cfg.answer_format!r}; allowed: {sorted(ANSWER_FORMATS)}")
    fields = {"dataset.problem_field": cfg.problem_field, "dataset.answer_field": cfg.answer_field}
    if cfg.path is not None:
        problems, answers = [], []
        for file in data_files.find(cfg.path):
            source = f"dataset.path: {file}"
            more_problems, more_answers = _pairs(source, data_files.read(file, source, fields), cfg)
            problems += more_problems
            answers += more_answers
    elif cfg.hub_id is not None:
        problems, answers = _hub_pairs(cfg, fields)
    else:
        problems, answers = _toy_pairs("train", cfg.size, cfg)
    return _dataset(*_subsample(problems, answers, cfg), cfg)


def _subsample(problems: list, answers: list, cfg: DatasetConfig) -> tuple[list, list]:
    """dataset.max_samples rows drawn by dataset.sample_seed, in their original order. Every row was
    checked first, so a subset never hides a bad row; a smaller subset is a prefix of the same
    permutation, so subsets of one seed nest."""
    if cfg.max_samples is None:
        return problems, answers
    n = len(problems)
    if cfg.max_samples > n:
        raise DataError(f"dataset.max_samples: {cfg.max_samples} is more than the {n} rows of "
                        f"{cfg.path or cfg.hub_id or 'the toy set'}; allowed: 1 to {n}, or null for all")
    import numpy as np

    keep = np.sort(np.random.default_rng(cfg.sample_seed).permutation(n)[:cfg.max_samples])
    return [problems[i] for i in keep], [answers[i] for i in keep]


def load_eval(cfg: DatasetConfig) -> datasets.Dataset | None:
    """The held-out split; only the toy task has one (the paper evaluates on benchmarks)."""
    if cfg.hub_id is not None or cfg.path is not None or cfg.eval_size == 0:
        return None
    return _dataset(*_toy_pairs("test", cfg.eval_size, cfg), cfg)


def drop_long_prompts(ds: datasets.Dataset, tokenizer, max_tokens: int | None) -> datasets.Dataset:
    """TRL 1.16 no longer truncates prompts; a truncated maths problem is a wrong problem, so drop it."""
    if max_tokens is None:
        return ds

    def fits(example) -> bool:
        ids = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        return len(ids) <= max_tokens

    return ds.filter(fits)
