"""Results files: RUN/eval/<checkpoint>/<benchmark>.json, one per checkpoint and benchmark.

One file per pair (not one per run) so a killed or requeued job keeps what it finished, a rerun
skips it (`settings` equal), and a reader globs `RUN/eval/*/*.json` without parsing anything else.
Keys (analysis/collect.py reads exactly these):

  benchmark     str    a tina.evaluate.testsets key: aime24 aime25 amc23 math_500 minerva gpqa_diamond toy
  checkpoint    str    "checkpoint-N", "adapter" (the run's final adapter) or "base"
  step          int|null  training step of the weights (base of a run: 0; a model on its own: null)
  pass@1        float  mean correctness over all problems, samples and seeds, in [0, 1]
  pass@1_std    float|null  standard deviation (ddof=1) of the benchmark score across the
                       n_samples x len(seeds) single-sample runs; null when there is only one run
  n_problems    int    problems scored
  n_samples     int    completions per problem per seed
  seeds         [int]  sampling seeds
  runs          [float] the score of each single-sample run, seed-major
  per_problem   [float]|null  mean correctness per problem
  problem_ids   [str]  per_problem's problems (tina.run_dir.problem_id of the query): analysis.compare
                       pairs two records by these; records written before it have none
  backend       "transformers"|"accelerate"|"vllm" (tina/evaluate/config.py Backend)
  model         str    base model (hub id or path); adapter: str|null, the LoRA weights evaluated
  settings      {...}  everything that changes the number (sampling, prompts, metric, data source)
  wall_seconds  float  time to evaluate this benchmark on this checkpoint (lighteval: the runs it
                       shared with the other benchmarks of its group, merging excluded)
  paper_column  str|null  the column of analysis/paper/paper_results.csv this compares with
  selection     {...}|null  how the checkpoint was chosen (best: the phase step and reason)
  run_dir, created_at, git_sha
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Any, Iterable, Optional

from tina.run_dir import EVAL as EVAL_DIR


def result_path(root: str | Path, checkpoint: str, benchmark: str) -> Path:
    return Path(root) / EVAL_DIR / checkpoint / f"{benchmark}.json"


def summarise(runs: list[float], per_problem: Optional[list[float]] = None) -> dict:
    """pass@1 (mean) and its spread over single-sample runs."""
    if not runs or any(not math.isfinite(r) for r in runs):
        raise ValueError(f"need finite run scores, got {runs}")
    return {
        "pass@1": statistics.fmean(runs),
        "pass@1_std": statistics.stdev(runs) if len(runs) > 1 else None,
        "runs": list(runs),
        "per_problem": per_problem,
    }


def write(path: Path, record: dict) -> dict:
    """Write atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**record, "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return record


def existing(path: Path, settings: dict) -> Optional[dict]:
    """The record at `path` if it was made with the same settings (then there is nothing to redo)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = json.loads(json.dumps(record.get("settings"), default=str)) == json.loads(json.dumps(settings, default=str))
    return record if same else None


def read_results(roots: str | Path | Iterable[str | Path]) -> list[dict]:
    """Every results record under each root's eval/ (a run directory or a base-model output dir)."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    records: list[dict[str, Any]] = []
    for root in roots:
        for path in sorted(Path(root).glob(f"{EVAL_DIR}/*/*.json")):
            try:
                record = json.loads(path.read_text())
            except json.JSONDecodeError:
                continue  # not ours, or written by something killed mid-write (ours are atomic)
            if isinstance(record, dict) and "pass@1" in record and "benchmark" in record:
                records.append({**record, "path": str(path)})
    return records
