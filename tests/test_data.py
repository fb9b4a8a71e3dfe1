"""Bad training data is refused before the model loads, naming the file, the line or row, and the field.

Every case writes a real file (LIMR's schema: `prompt`, `answer`) and loads it the way
tina.train does.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tina import run_dir as rd
from tina.config import ConfigError, DatasetConfig
from tina.data import DataError, load_train

ROOT = Path(__file__).resolve().parents[1]
GOOD = b'{"prompt": "How many divisors does 12 have?", "answer": "6"}\n'


def limr(path, **fields) -> DatasetConfig:
    """conf/dataset/limr.yaml's fields, reading `path`."""
    return DatasetConfig(name="limr", path=str(path), problem_field="prompt", answer_field="answer",
                         answer_format="as_is", system_prompt="S", **fields)


def refused(path, **fields) -> str:
    with pytest.raises(DataError) as e:
        load_train(limr(path, **fields))
    assert isinstance(e.value, ConfigError) and "\n" not in str(e.value)  # the CLI's one-line error
    return str(e.value)


# kind: (file name, bytes, the spot and field the message must name)
BAD_FILES = {
    "missing_field": ("x.jsonl", GOOD * 2 + b'{"prompt": "Solve 2x = 9."}\n',
                      ["line 3", "field 'answer' is missing", "dataset.answer_field=answer", "the row has: prompt"]),
    "null_problem": ("x.jsonl", GOOD + b'{"prompt": null, "answer": "6"}\n',
                     ["line 2", "field 'prompt' is null", "dataset.problem_field=prompt"]),
    "null_answer": ("x.jsonl", GOOD + b'{"prompt": "p", "answer": null}\n',
                    ["line 2", "field 'answer' is null", "dataset.answer_field=answer"]),
    "empty_answer": ("x.jsonl", GOOD + b'\n{"prompt": "p", "answer": "  "}\n',  # the blank line counts
                     ["line 3", "field 'answer' is empty"]),
    "problem_not_text": ("x.jsonl", GOOD + b'{"prompt": ["p"], "answer": "6"}\n',
                         ["line 2", "field 'prompt' must be text, got list"]),
    "invalid_json_line": ("x.jsonl", GOOD * 3 + b'{"prompt": "p", answer: "6"}\n' + GOOD,
                          ["line 4", "invalid JSON", "column 17"]),
    "line_not_an_object": ("x.jsonl", GOOD + b'["p", "6"]\n', ["line 2", "expected a JSON object, got list"]),
    "not_utf8": ("x.jsonl", GOOD + b'{"prompt": "caf\xe9", "answer": "6"}\n',
                 ["line 2", "not UTF-8", "byte 0xe9", "column 16"]),
    "empty_file": ("x.jsonl", b"", ["the file is empty"]),
    "only_blank_lines": ("x.jsonl", b"\n  \n\r\n", ["no rows"]),
    "json_array_row": ("x.json", b'[{"prompt": "p", "answer": "6"},\n {"prompt": "q", "answer": ""}]',
                       ["row index 1", "field 'answer' is empty"]),
    "json_array_syntax": ("x.json", b'[{"prompt": "p", "answer": "6"},\n {"prompt": "q" "answer": "7"}]',
                          ["line 2", "invalid JSON", "Expecting ','"]),
    "json_array_not_utf8": ("x.json", b'[{"prompt": "p", "answer": "6"},\n\n {"prompt": "\xff", "answer": "7"}]',
                            ["line 3", "not UTF-8"]),
    "csv_short_row": ("x.csv", b"prompt,answer\nWhat is 1+1?,2\nSolve it\n",
                      ["line 3", "field 'answer' is missing", "the row has: prompt"]),
    "csv_missing_column": ("x.csv", b"prompt,solution\nWhat is 1+1?,2\n",
                           ["line 1", "field 'answer' is missing from the header", "columns: prompt, solution"]),
    "csv_empty_value": ("x.csv", b'prompt,answer\n"What is 1+1?",2\n" ",3\n', ["line 3", "field 'prompt' is empty"]),
    "csv_only_header": ("x.csv", b"prompt,answer\n", ["no rows"]),
}


@pytest.mark.parametrize("kind", sorted(BAD_FILES))
def test_bad_file_is_refused_naming_file_spot_and_field(kind, tmp_path):
    name, content, names = BAD_FILES[kind]
    path = tmp_path / name
    path.write_bytes(content)
    message = refused(path)
    assert message.startswith(f"dataset.path: {path}"), message
    for part in names:
        assert part in message, (part, message)


def test_every_bad_row_is_counted_the_first_named(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(GOOD + b'{"prompt": "p"}\n' + GOOD + b'{"answer": "1"}\n{"prompt": "q", "answer": null}\n')
    message = refused(path)
    assert "line 2: field 'answer' is missing" in message and "3 bad rows in all" in message


def _parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_parquet_null_is_refused_naming_the_row_index(tmp_path):
    rows = [{"prompt": f"p{i}", "answer": str(i), "other": "x" * 100} for i in range(30)]
    rows[17]["answer"] = None
    path = _parquet(tmp_path / "x.parquet", rows)
    assert refused(path) == f"dataset.path: {path} row index 17: field 'answer' is null (dataset.answer_field=answer)"


def test_parquet_without_the_column_names_the_columns_it_has(tmp_path):
    path = _parquet(tmp_path / "x.parquet", [{"problem": "p", "answer": "6"}])
    message = refused(path)
    assert "field 'prompt' is missing from every row" in message and "columns: problem, answer" in message


def test_damaged_parquet_is_refused(tmp_path):
    path = _parquet(tmp_path / "x.parquet", [{"prompt": "p", "answer": "6"}])
    path.write_bytes(path.read_bytes()[:-20])  # a truncated download
    assert "not a readable Parquet file" in refused(path)


def test_answer_that_its_format_cannot_read_names_the_row(tmp_path):
    """II-Thought's gold is JSON inside a string: a row whose JSON lacks the answer is refused, not a crash."""
    rows = [{"messages": [{"role": "user", "content": "What is 1+1?"}], "verification_info": json.dumps(v)}
            for v in ({"answer": {"value": "2"}}, {"answer": {"value": "3"}}, {"answer": {}})]
    path = _parquet(tmp_path / "ii.parquet", rows)
    cfg = DatasetConfig(path=str(path), problem_field="messages.0.content", answer_field="verification_info",
                        answer_format="ii_thought_json", system_prompt="S")
    with pytest.raises(DataError, match=r"ii\.parquet row index 2: field 'verification_info' cannot be read as "
                                        r"dataset\.answer_format=ii_thought_json \(KeyError: 'value'\)"):
        load_train(cfg)
    # A dotted path that does not resolve is a missing field, not a KeyError.
    rows[1]["messages"] = []
    _parquet(path, rows)
    with pytest.raises(DataError, match=r"row index 1: field 'messages\.0\.content' is missing"):
        load_train(cfg)


def test_csv_is_read_as_csv(tmp_path):
    path = tmp_path / "limr.csv"
    path.write_text('prompt,answer\n"Solve x + 1 = 3, for x.",2\n"A problem\nover two lines",\\frac{9}{2}\n'
                    'What is 7 * 6?,42\n', encoding="utf-8")
    ds = load_train(limr(path))
    assert [row[1]["content"] for row in ds["prompt"]] == ["Solve x + 1 = 3, for x.", "A problem\nover two lines",
                                                          "What is 7 * 6?"]
    assert ds["solution"] == ["2", "\\frac{9}{2}", "42"]


def test_unsupported_extension_names_the_allowed_ones(tmp_path):
    path = tmp_path / "limr.txt"
    path.write_bytes(GOOD)
    assert refused(path) == (f"dataset.path: {path}: unsupported file type '.txt'; "
                             "allowed: .csv, .json, .jsonl, .parquet")


def test_folder_reads_every_data_file_and_refuses_one_without_any(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(GOOD)
    _parquet(tmp_path / "b.parquet", [{"prompt": "Solve 2x = 9.", "answer": "\\frac{9}{2}"}])
    (tmp_path / "README.md").write_text("a hub snapshot's card")
    assert load_train(limr(tmp_path))["solution"] == ["6", "\\frac{9}{2}"]

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    assert refused(empty) == (f"dataset.path: no data files in {empty} (found: notes.txt); "
                              "allowed: .csv, .json, .jsonl, .parquet")


def test_a_bad_file_in_a_folder_is_named(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(GOOD)
    (tmp_path / "b.jsonl").write_bytes(GOOD + b'{"prompt": "p", "answer": ""}\n')
    assert f"{tmp_path / 'b.jsonl'} line 2: field 'answer' is empty" in refused(tmp_path)


def test_hub_data_set_rows_are_checked_too(tmp_path):
    """`datasets.load_dataset` on a local folder stands in for the hub: the same loader, the same check."""
    folder = tmp_path / "hub"
    folder.mkdir()
    _parquet(folder / "train-00000.parquet", [{"prompt": "p", "answer": "6"}, {"prompt": "q", "answer": " "}])
    cfg = DatasetConfig(hub_id=str(folder), problem_field="prompt", answer_field="answer", system_prompt="S")
    with pytest.raises(DataError, match=rf"^dataset\.hub_id: {folder} split train row index 1: field 'answer' is empty"):
        load_train(cfg)


def test_cli_refuses_bad_data_before_the_model_loads(tmp_path):
    bad = tmp_path / "limr.jsonl"
    bad.write_bytes(GOOD + b'{"prompt": "Solve 2x = 9."}\n')
    run = tmp_path / "run"
    started = time.time()
    proc = subprocess.run([sys.executable, "-m", "tina.train", f"hydra.run.dir={run}", "dataset=limr",
                           f"dataset.path={bad}", "train.max_steps=1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    seconds = time.time() - started
    assert proc.returncode != 0
    assert (f"dataset.path: {bad} line 2: field 'answer' is missing (dataset.answer_field=answer; the row has: prompt)"
            in proc.stderr), proc.stderr[-3000:]
    # Nothing trained: no checkpoint, no adapter, and the trainer (which records the model's size) never started.
    assert not (run / rd.CHECKPOINTS).exists() and not (run / rd.ADAPTER).exists()
    assert "num_params" not in rd.read_summary(run)
    print(f"refused in {seconds:.1f} s")


# ----------------------------------------------------------------------------- dataset.max_samples
def _numbered(path: Path, n: int) -> Path:
    path.write_text("".join(json.dumps({"prompt": f"What is {i} + 0?", "answer": str(i)}) + "\n" for i in range(n)))
    return path


def _golds(cfg: DatasetConfig) -> list[int]:
    return [int(s) for s in load_train(cfg)["solution"]]


def test_max_samples_is_a_seeded_nested_subset_of_a_local_file(tmp_path):
    path = _numbered(tmp_path / "limr.jsonl", 50)
    small, large = _golds(limr(path, max_samples=10)), _golds(limr(path, max_samples=30))
    assert len(small) == 10 == len(set(small)) and len(large) == 30
    assert small == sorted(small) and set(small) <= set(large)  # file order kept; a smaller set nests in a larger
    assert small != list(range(10))  # drawn at random, not the file's head
    assert _golds(limr(path, max_samples=10)) == small  # the same draw every time
    assert _golds(limr(path, max_samples=10, sample_seed=1)) != small
    assert _golds(limr(path, max_samples=50)) == list(range(50))
    assert _golds(limr(path)) == list(range(50))


def test_max_samples_is_drawn_after_every_row_is_checked(tmp_path):
    path = _numbered(tmp_path / "limr.jsonl", 20)
    with open(path, "a") as f:
        f.write('{"prompt": "p"}\n')  # a bad row that a subset would be unlikely to draw
    assert "line 21: field 'answer' is missing" in refused(path, max_samples=5)


def test_max_samples_above_the_rows_names_how_many_there_are(tmp_path):
    path = _numbered(tmp_path / "limr.jsonl", 20)
    assert refused(path, max_samples=21) == (f"dataset.max_samples: 21 is more than the 20 rows of {path}; "
                                             "allowed: 1 to 20, or null for all")


def test_max_samples_of_the_toy_set_and_a_hub_data_set(tmp_path):
    from tests.helpers import compose_cfg
    from tina.config import validate

    tc = validate(compose_cfg(["dataset.max_samples=100", f"train.output_dir={tmp_path}"]))
    toy = load_train(tc.dataset)
    assert len(toy) == 100 and set(toy["solution"]) <= set(load_train(DatasetConfig(system_prompt="S"))["solution"])
    folder = tmp_path / "hub"
    folder.mkdir()
    _parquet(folder / "train-00000.parquet", [{"prompt": f"p{i}", "answer": str(i)} for i in range(40)])
    hub = DatasetConfig(hub_id=str(folder), problem_field="prompt", answer_field="answer", system_prompt="S",
                        max_samples=12)
    assert len(set(_golds(hub))) == 12
    for bad, message in [("dataset.max_samples=2001", r"^dataset\.max_samples: must be at most dataset\.size=2000"),
                         ("dataset.max_samples=7", r"^dataset\.max_samples: must be at least train\.prompts_per_step=8"),
                         ("dataset.max_samples=0", r"^dataset\.max_samples: must be an integer in \[1, inf\)")]:
        with pytest.raises(ConfigError, match=message):
            validate(compose_cfg([bad, f"train.output_dir={tmp_path}"]))
