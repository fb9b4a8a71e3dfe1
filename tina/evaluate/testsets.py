"""The evaluation benchmarks, defined once for every backend (in-process transformers, lighteval on
accelerate or vLLM).

Each benchmark says where its rows live (hub id, config, split), which field holds the problem,
how the gold answer is built from a row, the prompt, and how an answer is matched. Every backend
turns rows into the same examples through `build_example`; the lighteval backends write those
examples to JSONL and lighteval reads them through a generic task file
(tina/evaluate/lighteval_tasks.py), so the prompt and gold can never differ between backends.

Prompts and golds follow the paper's lighteval tasks (open-r1's `evaluate.py` as Open-RS forked it):
the simple-evals maths prompt asking for a final `\\boxed{}` answer, golds from `answer` (AIME, AMC)
or from the worked `solution` and its `\\boxed{}` (MATH-500, Minerva), GPQA as simple-evals'
multiple-choice prompt with the choices shuffled and the gold a letter. No system prompt (the
paper's evaluation), except for the toy task, whose model only knows its training prompt.

Named testsets, not benchmarks: the top-level benchmarks/ folder holds performance benchmarks.
At import this module needs only the standard library and tina's bottom layer (errors, prompts,
toy); `load_rows` imports `datasets` only when called.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Any, Optional

from tina.errors import ConfigError
from tina.prompts import ANSWER_FORMATS
from tina.toy import SYSTEM_PROMPT, rows

# simple-evals' maths prompt, as the paper's lighteval tasks use it; asking for \boxed{} is what
# makes "boxed first" extraction find the final answer rather than an intermediate number.
MATH_TEMPLATE = (
    "Solve the following math problem efficiently and clearly.  The last line of your response should be of "
    "the following format: 'Therefore, the final answer is: $\\boxed{{ANSWER}}$. I hope it is correct' (without "
    "quotes) where ANSWER is just the final number or expression that solves the problem. Think step by step "
    "before answering.\n\n{problem}"
)

# simple-evals' multiple-choice prompt (GPQA).
CHOICE_TEMPLATE = (
    "Answer the following multiple choice question. The last line of your response should be of the following "
    "format: 'Answer: $LETTER' (without quotes) where LETTER is one of ABCD. Think step by step before "
    "answering.\n\n{problem}\n\nA) {A}\nB) {B}\nC) {C}\nD) {D}"
)

LETTERS = "ABCD"


METRICS = ("math", "letter")  # math: math-verify, boxed first; letter: A-D, boxed first, then "Answer: X"


@dataclass(frozen=True)
class Benchmark:
    name: str
    hub_id: Optional[str]  # None: the embedded toy task (tina/toy.py)
    config: Optional[str]
    split: str
    problem_field: str
    gold_field: Optional[str]  # None for multiple choice (GPQA): the gold is the shuffled letter
    gold_format: str  # an ANSWER_FORMATS key (tina/prompts.py), or "choice"
    template: str
    metric: str  # a METRICS entry
    lighteval_task: str  # our task in tina/evaluate/lighteval_tasks.py
    size: Optional[int]  # problems in the full benchmark (None: configurable, the toy task)
    paper_column: Optional[str] = None  # column of analysis/paper/paper_results.csv
    lighteval_builtin: Optional[str] = None  # lighteval 0.13's own task of that name, for reference
    system_prompt: Optional[str] = None


def _toy_system_prompt() -> str:

    return SYSTEM_PROMPT


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("aime24", "HuggingFaceH4/aime_2024", None, "train", "problem", "answer", "dollars",
                  MATH_TEMPLATE, "math", "tina_aime24", 30, "aime24", "aime24"),
        Benchmark("aime25", "yentinglin/aime_2025", None, "train", "problem", "answer", "dollars",
                  MATH_TEMPLATE, "math", "tina_aime25", 30, "aime25", "aime25"),
        Benchmark("amc23", "knoveleng/AMC-23", None, "train", "problem", "answer", "dollars",
                  MATH_TEMPLATE, "math", "tina_amc23", 40, "amc23"),
        Benchmark("math_500", "HuggingFaceH4/MATH-500", None, "test", "problem", "solution", "as_is",
                  MATH_TEMPLATE, "math", "tina_math_500", 500, "math500", "math_500"),
        Benchmark("minerva", "knoveleng/Minerva-Math", None, "train", "problem", "solution", "as_is",
                  MATH_TEMPLATE, "math", "tina_minerva", 272, "minerva"),
        Benchmark("gpqa_diamond", "Idavidrein/gpqa", "gpqa_diamond", "train", "Question", None, "choice",
                  CHOICE_TEMPLATE, "letter", "tina_gpqa_diamond", 198, "gpqa", "gpqa:diamond"),
        # The embedded held-out split (tina/toy.py): the training conversation, system prompt included.
        Benchmark("toy", None, None, "test", "problem", "solution", "as_is",
                  "{problem}", "math", "tina_toy", None, None, None, system_prompt="toy"),
    )
}

# Other spellings people use (lighteval's and the paper table's); results always use the key above.
ALIASES = {"gpqa:diamond": "gpqa_diamond", "gpqa": "gpqa_diamond", "math500": "math_500"}

PAPER_BENCHMARKS = ("aime24", "aime25", "amc23", "math_500", "minerva", "gpqa_diamond")


def canonical(name: str) -> str:
    """The benchmark key for `name` or an alias; ValueError listing the allowed names otherwise."""
    key = ALIASES.get(name, name)
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; allowed: {sorted(BENCHMARKS)} (aliases: {sorted(ALIASES)})")
    return key


def get(name: str) -> Benchmark:
    return BENCHMARKS[canonical(name)]


def system_prompt(bench: Benchmark, override: Optional[str] = None) -> Optional[str]:
    """The system prompt a benchmark is asked with: the toy task's own, else `override` (default none)."""
    if bench.system_prompt == "toy":
        return _toy_system_prompt()
    return override


def shuffled_choices(row: dict, seed: int = 0) -> tuple[list[str], int]:
    """GPQA's four answers in a fixed pseudo-random order and the gold's index.

    The order comes from a hash of the question and `seed`, not from a global RNG, so every
    backend, run and checkpoint asks the same question the same way (lighteval's own GPQA task
    reshuffles with `random` on every load, which adds noise between checkpoints).
    """
    digest = hashlib.sha256(f"{seed}/{row['Question']}".encode()).hexdigest()
    gold = random.Random(digest).randrange(4)
    choices = [str(row[f"Incorrect Answer {i}"]).strip() for i in (1, 2, 3)]
    choices.insert(gold, str(row["Correct Answer"]).strip())
    return choices, gold


def build_example(bench: Benchmark, row: dict, *, shuffle_seed: int = 0) -> dict:
    """One row in the benchmark's hub schema -> {"query": user message, "gold": str, "choices", "gold_index"}.

    `gold` is what the CPU scorer compares against (math-verify input, or a letter); `choices` and
    `gold_index` are what lighteval's Doc wants (the gold alone for maths, the four letters for GPQA).
    """
    for key in (bench.problem_field, bench.gold_field):
        if key is not None and key not in row:
            raise KeyError(f"{bench.name}: row has no field {key!r} (fields: {sorted(row)})")
    problem = str(row[bench.problem_field]).strip()
    if bench.gold_format == "choice":
        choices, gold_index = shuffled_choices(row, shuffle_seed)
        query = bench.template.format(problem=problem, **dict(zip(LETTERS, choices)))
        return {"query": query, "gold": LETTERS[gold_index], "choices": list(LETTERS), "gold_index": gold_index}
    gold = ANSWER_FORMATS[bench.gold_format](row[bench.gold_field])
    return {"query": bench.template.format(problem=problem), "gold": gold, "choices": [gold], "gold_index": 0}


def messages(example: dict, system: Optional[str]) -> list[dict]:
    """The conversation a chat model is asked: optional system prompt, then the query."""
    convo = [{"role": "system", "content": system}] if system else []
    return convo + [{"role": "user", "content": example["query"]}]


# Letter answers: a boxed letter wins (as boxed-first maths extraction does), else the last
# "Answer: X" line that simple-evals' prompt asks for.
_BOXED_LETTER = re.compile(r"\\boxed\{\s*(?:\\text\{)?\s*\(?([A-D])\)?\s*\}?\s*\}")
_ANSWER_LETTER = re.compile(r"(?i:answer)\s*(?:is)?\s*[:：]?\s*\$?\s*\(?([A-D])\)?(?![A-Za-z])")


_BARE_LETTER = re.compile(r"\(?([A-D])\)?[.)]?")


def letter_of(text: str) -> Optional[str]:
    """The letter a completion answers with: boxed, else the last "Answer: X", else a last line that is a letter."""
    boxed = _BOXED_LETTER.findall(text)
    if boxed:
        return boxed[0]
    answers = _ANSWER_LETTER.findall(text)
    if answers:
        return answers[-1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    bare = _BARE_LETTER.fullmatch(lines[-1]) if lines else None
    return bare.group(1) if bare else None


def score(bench: Benchmark, completions: list[str], golds: list[str]) -> tuple[list[float], int]:
    """Correctness (1.0/0.0) of each completion, and how many golds could not be read.

    Maths uses the training accuracy reward itself (math-verify, boxed first), so a held-out number
    and the `rewards/accuracy_reward/mean` curve measure the same thing. A gold math-verify cannot
    parse scores the completion 0 (counted, so a broken data file shows) rather than dropping the
    problem, which would silently change the benchmark's denominator.
    """
    if bench.metric == "letter":
        return [1.0 if letter_of(c) == g else 0.0 for c, g in zip(completions, golds)], 0
    from tina.rewards import get_reward

    raw = get_reward("accuracy")(completions, solution=golds)
    return [0.0 if r is None else float(r) for r in raw], sum(r is None for r in raw)


def load_rows(bench: Benchmark, *, path: Optional[str] = None, toy_size: int = 200, toy_seed: int = 0, toy_task: str = "add",
              override_key: Optional[str] = None) -> list[dict[str, Any]]:
    """The benchmark's rows: the toy split, a local JSONL/Parquet file or folder, or the hub.

    Without hub access and without `path`, raise ConfigError naming the override that supplies
    the file (`override_key`, e.g. eval.data_path.aime24), so an offline cluster fails in seconds.
    """
    from pathlib import Path


    key = override_key or f"eval.data_path.{bench.name}"
    if path is None and bench.hub_id is None:

        return rows(bench.split, toy_size, toy_seed, toy_task)
    import datasets

    if path is not None:
        p = Path(path)
        files = [f for ext in ("parquet", "jsonl", "json") for f in sorted(p.glob(f"*.{ext}"))] if p.is_dir() else [p]
        if not files or not all(f.is_file() for f in files):
            raise ConfigError(f"{key}: no JSONL or Parquet file at {path}")
        kind = "parquet" if files[0].suffix == ".parquet" else "json"
        ds = datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train")
    else:
        try:
            ds = datasets.load_dataset(bench.hub_id, bench.config, split=bench.split)
        except Exception as e:  # the hub client raises many types when offline or gated
            raise ConfigError(
                f"{key}: could not load {bench.hub_id!r} (config {bench.config}, split {bench.split}) from the hub "
                f"({type(e).__name__}: {str(e)[:200]}). Without hub access, download it elsewhere and pass "
                f"{key}=/path/to/file.jsonl (JSONL or Parquet with the hub's fields)"
            ) from e
    return [dict(r) for r in ds]
