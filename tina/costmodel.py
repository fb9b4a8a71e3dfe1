"""What a run will cost before it runs: prices, seconds per step, and one estimate per job.

Lives in tina, not analysis, because the launcher refuses an over-budget sweep before submitting
(tina must not import analysis); analysis.cost re-exports the price functions for reports, so
each price has one home, ``tina/prices.yaml``.

The model: wall = steps x seconds per step (+ evaluation); GPU-hours = wall x GPUs; dollars =
GPU-hours x price. Seconds per step come from evidence, best first: finished runs of this
cluster on the same model and hardware (``python -m tina.plan --from DIR``), else the paper's own
cost table. Evidence is carried to a job in proportion to max_completion_length (generation
dominates a GRPO step, and a batched generate takes as many decoding passes as the longest
completion, whatever the batch: the paper's G=4 and G=6 recipes cost the same per step) and to
the GPU-seconds a step takes (twice the GPUs, half the wall).
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping

import yaml

from tina import run_dir as rd
from tina.errors import ConfigError
from tina.run_status import status_of

PRICES_PATH = Path(__file__).resolve().parent / "prices.yaml"
CPU = "cpu"

# The paper's own figures (Tina, arXiv 2504.15777, cost table; analysis/paper/paper_costs.csv holds
# the whole table): the best Open-RS2 checkpoint, step 450, trained for 8 USD, and its evaluation
# at about 1 USD a checkpoint (all 17 checkpoints for 17 USD; the best one for 1), six benchmarks,
# on 2x L40S at 1 USD per GPU-hour.
PAPER_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B"
PAPER_GPU, PAPER_NUM_GPUS = "L40S", 2
PAPER_STEPS, PAPER_TRAIN_USD = 450, 8.0
PAPER_COMPLETION_LENGTH = 3584  # Open-RS2's max_completion_length
PAPER_EVAL_USD_PER_CHECKPOINT, PAPER_EVAL_BENCHMARKS = 1.0, 6
# Models of the paper model's shape (Qwen2, 28 layers, hidden 1536), whose step takes as long: the
# paper's timing carries to them until this cluster has timed one (conf/model/*.yaml).
PAPER_SHAPE = (PAPER_MODEL, "Qwen/Qwen2.5-1.5B-Instruct")


# ----------------------------------------------------------------------------- prices
@lru_cache(maxsize=None)
def _load_prices_cached(path: str) -> tuple:
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    table = data.get("prices", data)
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{path}: expected a mapping 'prices: {{GPU: USD per GPU-hour}}'")
    return tuple((str(k), float(v)) for k, v in table.items())


def load_prices(path: str | Path | None = None) -> dict[str, float]:
    """The price table {gpu_type: USD per GPU-hour} (default: ``tina/prices.yaml``)."""
    return dict(_load_prices_cached(str(Path(path) if path else PRICES_PATH)))


def _norm(s: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", str(s).upper())


def gpu_key(name: str, prices: Mapping[str, float] | None = None) -> str:
    """Map a GPU type or a device name as torch reports it onto a key of the price table.

    Exact keys match case-insensitively ("l40s" -> "L40S"); device names match by the longest key
    they contain, ignoring case and punctuation ("NVIDIA H100 80GB HBM3" -> "H100", "NVIDIA L40S" ->
    "L40S" not "L40"); an A100 is "A100-80GB" when the name says 80GB, else "A100-40GB".
    Raises ValueError listing the known types when nothing matches.
    """
    table = load_prices() if prices is None else dict(prices)
    if name is None or not str(name).strip():
        raise ValueError(f"no GPU type given; known types: {', '.join(table)}")
    by_lower = {k.lower(): k for k in table}
    if str(name).strip().lower() in by_lower:
        return by_lower[str(name).strip().lower()]
    n = _norm(name)
    if "A100" in n:
        want = "A100-80GB" if "80G" in n else "A100-40GB"
        if want.lower() in by_lower:
            return by_lower[want.lower()]
    for k in sorted(table, key=lambda k: -len(_norm(k))):
        kn = _norm(k)
        if kn and kn != "CPU" and not kn.startswith("A100") and kn in n:
            return k
    raise ValueError(f"unknown GPU type {name!r}; known types: {', '.join(table)} "
                     f"(add it to {PRICES_PATH} or pass prices=...)")


def gpu_hours(wall_seconds: float, num_gpus: int) -> float:
    """GPU-hours = wall-clock seconds / 3600 x number of GPUs."""
    if wall_seconds is None or wall_seconds < 0 or not math.isfinite(float(wall_seconds)):
        raise ValueError(f"wall_seconds must be a finite number >= 0, got {wall_seconds!r}")
    if num_gpus is None or int(num_gpus) < 0:
        raise ValueError(f"num_gpus must be >= 0, got {num_gpus!r}")
    return float(wall_seconds) / 3600.0 * int(num_gpus)


def dollars(gpu_hours: float, gpu_type: str, prices: Mapping[str, float] | None = None) -> float:
    """USD for ``gpu_hours`` on ``gpu_type`` (a price-table key or a torch device name).

    ``prices`` overrides the table in ``tina/prices.yaml``. Unknown type -> ValueError that
    lists the known types.
    """
    table = load_prices() if prices is None else dict(prices)
    return float(gpu_hours) * float(table[gpu_key(gpu_type, table)])


# ----------------------------------------------------------------------------- evidence
@dataclass(frozen=True)
class Evidence:
    """Seconds per step measured somewhere, and on what: named in every row it prices."""

    source: str
    seconds_per_step: float
    model: str
    gpu_type: str  # a price-table key, or "cpu"
    num_gpus: int  # 0 on CPU
    completion_length: int  # max_completion_length the measurement ran with


def paper_evidence() -> Evidence:
    wall = PAPER_TRAIN_USD / load_prices()[PAPER_GPU] / PAPER_NUM_GPUS * 3600
    return Evidence(
        source=f"paper: Open-RS2, {PAPER_STEPS} steps for {PAPER_TRAIN_USD:g} USD on {PAPER_NUM_GPUS}x {PAPER_GPU}",
        seconds_per_step=wall / PAPER_STEPS, model=PAPER_MODEL, gpu_type=PAPER_GPU,
        num_gpus=PAPER_NUM_GPUS, completion_length=PAPER_COMPLETION_LENGTH,
    )


def evidence_from_runs(paths: Iterable[Path | str], notes: list[str] | None = None) -> list[Evidence]:
    """One Evidence per finished run found in ``paths`` (run directories or sweep directories). A run
    whose record gives no usable timing (an unreadable file, Infinity seconds, steps no count can be)
    is left out, with a line in ``notes`` saying why."""
    out = []
    for path in map(Path, paths):
        if not path.exists():
            raise FileNotFoundError(f"--from: no such directory {path}")
        runs = [path] if (path / rd.SUMMARY).exists() else sorted(p.parent for p in path.glob(f"*/{rd.SUMMARY}"))
        for run in runs:
            why: list[str] = []
            try:
                raw = rd.read_summary(run)
                s = rd.checked_summary(raw, why)  # its numbers read as analysis reads them
                if not (status := status_of(s.get("status"))) or not status.finished:
                    continue
                if any(s.get(k) != raw.get(k) for k in _TIMING):  # a timing damaged: not guessed at
                    raise ValueError("; ".join(why))
                if not (s.get("steps") and s.get("wall_seconds")):
                    continue
                out.append(_evidence(run, s, rd.read_config(run)))
            except (ConfigError, AttributeError, KeyError, TypeError, ValueError, OverflowError) as e:
                if notes is not None:
                    notes.append(f"{run}: not used for seconds per step ({type(e).__name__}: {e})")
    return out


_TIMING = ("steps", "wall_seconds", "device")  # the summary's fields a seconds-per-step is made of


def _evidence(run: Path, s: dict, cfg: dict) -> Evidence:
    """From a checked summary (tina.run_dir.checked_summary): steps a count, wall_seconds a finite number, both > 0."""
    steps, wall = rd.as_step(s["steps"]), s["wall_seconds"]
    dev = s.get("device") or {}
    gpu = CPU if dev.get("type") != "cuda" else gpu_key(dev.get("gpu_type") or dev.get("gpu_name"))
    length = rd.as_step(cfg["algorithm"]["max_completion_length"])
    if not length or not isinstance(cfg["model"]["name_or_path"], str):
        raise ValueError("config.yaml: no model.name_or_path or algorithm.max_completion_length")
    return Evidence(
        source=str(run), seconds_per_step=float(wall) / steps, model=cfg["model"]["name_or_path"], gpu_type=gpu,
        num_gpus=0 if gpu == CPU else int(dev.get("num_gpus") or 1), completion_length=length,
    )


# ----------------------------------------------------------------------------- one job
def _hardware(tc) -> tuple[str | None, int]:
    """(GPU type or None when unset, GPUs) of a job. bf16 and vLLM need a GPU, so either marks a GPU job."""
    c = tc.compute
    if not (c.bf16 or c.use_vllm or c.gpu_type):
        return CPU, 0
    return (gpu_key(c.gpu_type) if c.gpu_type else None), int(c.num_processes)


def _scaled(ev: Evidence, length: int, gpus: int) -> float:
    """Seconds per step of ``ev`` carried to a job of max_completion_length ``length`` on ``gpus`` GPUs."""
    s = ev.seconds_per_step * length / ev.completion_length
    return s * ev.num_gpus / gpus if ev.num_gpus and gpus else s


def _eval_checkpoints(tc, steps: int) -> int:
    e = tc.eval
    n = -(-steps // tc.train.save_steps) if e.checkpoints.value == "all" else 1
    return n + int(bool(e.include_base))


def estimate(tc, evidence: list[Evidence], overrides: Iterable[str] = (), num: int = 0) -> dict:
    """One plan row for a validated TinaConfig: steps, hardware, wall, GPU-hours, dollars, evidence used.

    Unknown quantities (one epoch of a hub data set, a model nobody has timed) are None, never guessed.
    """
    steps = tc.stop_step
    gpu, gpus = _hardware(tc)
    length = tc.algorithm.max_completion_length
    matching = [ev for ev in evidence if ev.model == tc.model.name_or_path
                and (gpu is None and ev.gpu_type != CPU or ev.gpu_type == gpu)]
    notes = []
    if not matching and gpu != CPU and tc.model.name_or_path in PAPER_SHAPE:
        matching = [paper_evidence()]
        if tc.model.name_or_path != PAPER_MODEL:
            notes.append(f"timed as {PAPER_MODEL}, the paper's model of the same shape")
    if gpu is None and matching:
        gpu = matching[0].gpu_type
        notes.append(f"compute.gpu_type unset: priced as {gpu}, the evidence's GPU")
    sps = statistics.median(_scaled(ev, length, gpus) for ev in matching) if matching else None
    source = (matching[0].source if len(matching) == 1 else
              f"median of {len(matching)} finished runs under {Path(matching[0].source).parent}") if matching else None
    rows = tc.dataset.known_size
    if steps is None and rows is not None:  # one epoch of a data set whose size is known (toy, max_samples)
        steps = rows // tc.train.prompts_per_step  # TRL's sampler drops the last partial step
        notes.append(f"one epoch of {rows} samples at {tc.train.prompts_per_step} a step: an upper bound "
                     "(prompts over algorithm.max_prompt_length are dropped)")
    elif steps is not None and rows is not None and steps * tc.train.prompts_per_step > rows:
        notes.append(f"{steps} steps x {tc.train.prompts_per_step} prompts = "
                     f"{steps * tc.train.prompts_per_step / rows:.1f} epochs of {rows} samples")
    if steps is None:
        notes.append("train.max_steps is null (one epoch of a hub data set): set train.max_steps to plan it")
    if sps is None:
        notes.append(f"no timing for {tc.model.name_or_path} on {gpu or 'GPU'}: pass --from with finished runs")
    if tc.train.early_stop.value != "off":
        notes.append("early stopping may end it sooner: an upper bound")
    train_wall = sps * steps if sps is not None and steps is not None else None
    price_gpu = gpu or PAPER_GPU
    train_h = 0.0 if gpu == CPU else (gpu_hours(train_wall, gpus) if train_wall is not None else None)
    eval_h, eval_wall = 0.0, 0.0
    if tc.eval.after_training and gpu != CPU and steps is not None:
        # paper: ~1 USD a checkpoint on L40S = 1 GPU-hour for 6 benchmarks x 1 sample x 1 seed
        per_ckpt = PAPER_EVAL_USD_PER_CHECKPOINT / load_prices()[PAPER_GPU]
        work = len(tc.eval.benchmarks) / PAPER_EVAL_BENCHMARKS * tc.eval.n_samples * len(tc.eval.seeds)
        eval_h = per_ckpt * work * _eval_checkpoints(tc, steps)
        eval_wall = eval_h / gpus * 3600
    train_usd = dollars(train_h, price_gpu) if train_h is not None else None
    eval_usd = dollars(eval_h, price_gpu)
    return {
        "num": num, "overrides": " ".join(overrides), "steps": steps, "gpu_type": gpu or price_gpu, "num_gpus": gpus,
        "seconds_per_step": sps, "wall_hours": (train_wall + eval_wall) / 3600 if train_wall is not None else None,
        "gpu_hours": train_h + eval_h if train_h is not None else None,
        "train_usd": train_usd, "eval_usd": eval_usd,
        "usd": train_usd + eval_usd if train_usd is not None else None,
        "evidence": source, "notes": notes,
    }


def totals(rows: list[dict]) -> dict:
    """Sums over the rows; ``complete`` is False when some row could not be priced (its None counts 0)."""
    def total(key):
        return sum(r[key] or 0.0 for r in rows)

    return {
        "total_gpu_hours": total("gpu_hours"), "total_usd": total("usd"),
        "train_usd": total("train_usd"), "eval_usd": total("eval_usd"),
        "total_wall_hours": total("wall_hours"),
        "complete": all(r["usd"] is not None for r in rows),
    }


def over_budget(rows: list[dict], budget_usd: float) -> str | None:
    """Why a sweep may not be submitted under ``budget_usd``, or None when it fits."""
    t = totals(rows)
    if not t["complete"]:
        unpriced = [r for r in rows if r["usd"] is None]
        return (f"jobs {[r['num'] for r in unpriced]} cannot be priced ({unpriced[0]['notes'][-1]}), so the sweep cannot be "
                f"held to a budget of {budget_usd:g} USD")
    if t["total_usd"] > budget_usd:
        return (f"estimated {t['total_usd']:.2f} USD for {len(rows)} jobs is {t['total_usd'] - budget_usd:.2f} USD "
                f"over the budget of {budget_usd:g} USD")
    return None


__all__ = ["PRICES_PATH", "Evidence", "load_prices", "gpu_key", "gpu_hours", "dollars", "paper_evidence",
           "evidence_from_runs", "estimate", "totals", "over_budget"]
