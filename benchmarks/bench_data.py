"""Time `tina.data.load_train` (read, check every row, build the Dataset) on a large local file.

    python benchmarks/bench_data.py [--rows 100000] [--reps 3]

Writes LIMR-schema rows (a ~300-character problem, a short answer, and a ~1,000-character worked
solution the loader must skip) as JSONL, Parquet and CSV, and times, interleaved, load_train on each
and, for comparison, what tina did before the checks: `datasets.load_dataset("json")` plus
`Dataset.map` (JSONL only; it checked nothing). Prints the median wall and CPU seconds and the peak
RSS of the process.

MEASURED (100,000 rows, 3 reps; 2 CPU cores shared with other jobs, load average 6-9, so trust the
CPU seconds over the wall seconds):

    files: jsonl 147 MiB, parquet 87 MiB, csv 144 MiB
    load_train jsonl                   6.76 s wall    1.73 s CPU
    load_train parquet                 4.79 s wall    1.20 s CPU
    load_train csv                    11.73 s wall    3.81 s CPU
    before: load_dataset+map jsonl    17.05 s wall    5.50 s CPU   (checked nothing)
    peak RSS 1067 MiB (the benchmark's own table included)
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datasets  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from tina.config import DatasetConfig  # noqa: E402
from tina.data import load_train  # noqa: E402


def write(folder: Path, n: int) -> dict[str, Path]:
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]

    def text(chars: int) -> str:  # varied, so Parquet cannot collapse it to one dictionary entry
        return " ".join(rng.choices(words, k=chars // 5))

    table = pa.table({
        "prompt": [text(300) for _ in range(n)],
        "answer": [str(i % 97) for i in range(n)],
        "solution": [text(1000) for _ in range(n)],
    })
    paths = {"jsonl": folder / "x.jsonl", "parquet": folder / "x.parquet", "csv": folder / "x.csv"}
    pq.write_table(table, paths["parquet"])
    table.to_pandas().to_json(paths["jsonl"], orient="records", lines=True)
    table.to_pandas().to_csv(paths["csv"], index=False)
    return paths


def cfg(path: Path) -> DatasetConfig:
    return DatasetConfig(path=str(path), problem_field="prompt", answer_field="answer", system_prompt="S")


def before(path: Path) -> datasets.Dataset:
    """tina's loader before the checks (commit efd8aa5): datasets' JSON reader, then a map to the row schema."""
    raw = datasets.load_dataset("json", data_files=[str(path)], split="train")

    def to_row(example):
        return {"prompt": [{"role": "system", "content": "S"}, {"role": "user", "content": example["prompt"]}],
                "solution": str(example["answer"])}

    return raw.map(to_row, remove_columns=raw.column_names)


def timed(fn) -> tuple[float, float, int]:
    wall, cpu = time.perf_counter(), time.process_time()
    n = len(fn())
    return time.perf_counter() - wall, time.process_time() - cpu, n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        paths = write(Path(tmp), args.rows)
        arms = {f"load_train {kind}": (lambda p=p: load_train(cfg(p))) for kind, p in paths.items()}
        arms["before: load_dataset+map jsonl"] = lambda: before(paths["jsonl"])
        times: dict[str, list] = {name: [] for name in arms}
        for rep in range(args.reps):
            order = list(arms) if rep % 2 == 0 else list(reversed(arms))
            for name in order:
                datasets.disable_caching()  # each rep reads the file again, as a new job would
                times[name].append(timed(arms[name]))
        sizes = {kind: p.stat().st_size / 2**20 for kind, p in paths.items()}
    print(f"{args.rows} rows; files: " + ", ".join(f"{k} {v:.0f} MiB" for k, v in sizes.items()))
    for name, runs in times.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        print(f"{name:32s} {wall:6.2f} s wall  {cpu:6.2f} s CPU  {runs[0][2]} rows  "
              f"({1e6 * wall / runs[0][2]:.1f} us/row)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
