"""Typed schema of `python -m tina.evaluate` (root conf/evaluate.yaml, group conf/eval/{cpu,gpu}.yaml).

Same pattern as tina/config.py: dataclasses in Hydra's ConfigStore, so a misspelt key or an enum
value outside its set fails at composition; value checks in `check()`, raising ConfigError that
names the key and what is allowed. `EvalConfig` is self-contained so the training schema can nest
it (`eval.after_training=true` evaluates in the same job, see `tina.evaluate.evaluate_run`).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from tina.evaluate import testsets as bm
from tina import run_dir as rd
from tina.errors import NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, Range, check_bounds, require
from tina.schema import check_override_keys as _check_keys
from tina.schema import validate as validate_schema
from tina.toy import TASKS


_require = require


class Backend(str, Enum):
    transformers = "transformers"  # tina's own: HF generate + tina.evaluate.testsets.score in this process (no lighteval)
    accelerate = "accelerate"  # lighteval's transformers backend in its own environment: CPU, or GPUs without vLLM
    vllm = "vllm"  # lighteval + vLLM in its own environment (GPU only): the paper's evaluation

    @property
    def lighteval(self) -> bool:
        return self != Backend.transformers


class Selection(str, Enum):
    all = "all"  # every saved checkpoint, and the final adapter if it is a later step
    last = "last"  # the latest weights: the final adapter, else the last checkpoint
    best = "best"  # the checkpoint at or before the phase transition (analysis.phase); else last


class ChatTemplate(str, Enum):
    tokenizer = "tokenizer"  # the model's own template: what lighteval uses, so base and checkpoints compare
    training = "training"  # the run's model.chat_template (e.g. DeepSeek's without the <think> prefill)


@dataclass
class VllmConfig:
    """vLLM engine settings passed to lighteval's VLLMModelConfig (GPU backend only)."""

    dtype: str = "bfloat16"
    max_model_length: int = 32768
    gpu_memory_utilization: float = 0.8
    max_num_batched_tokens: int = 32768
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1

    BOUNDS: ClassVar = {"max_model_length": POSITIVE_INT, "gpu_memory_utilization": Range(0, 1, lo_open=True),
                        "max_num_batched_tokens": POSITIVE_INT, "tensor_parallel_size": POSITIVE_INT,
                        "data_parallel_size": POSITIVE_INT}

    def check(self) -> None:
        _require(self.dtype in ("bfloat16", "float16", "float32"), "eval.vllm.dtype",
                 f"must be one of bfloat16, float16, float32, got {self.dtype!r}")


@dataclass
class AccelerateConfig:
    """lighteval's TransformersModelConfig settings (backend accelerate only)."""

    dtype: str = "float32"  # CPUs here have no fast bfloat16
    device: str = "auto"  # auto: cuda where torch sees a GPU, else cpu

    def check(self) -> None:
        _require(self.dtype in ("bfloat16", "float16", "float32"), "eval.accelerate.dtype",
                 f"must be one of bfloat16, float16, float32, got {self.dtype!r}")
        _require(self.device in ("auto", "cpu", "cuda"), "eval.accelerate.device",
                 f"must be one of auto, cpu, cuda, got {self.device!r}")


@dataclass
class EvalConfig:
    backend: Backend = Backend.transformers
    checkpoints: Selection = Selection.last
    include_base: bool = False  # also evaluate the run's base model (results under eval/base/)
    benchmarks: list[str] = field(default_factory=lambda: ["toy"])
    n_samples: int = 4  # completions per problem per seed
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 32
    limit: Optional[int] = None  # first N problems of each benchmark (quick looks; not comparable numbers)
    system_prompt: Optional[str] = None  # for the paper's benchmarks; the toy task keeps its own
    chat_template: ChatTemplate = ChatTemplate.tokenizer
    # benchmark -> local JSONL/Parquet (file or folder) in the hub's schema, for clusters without hub access
    data_path: dict[str, Optional[str]] = field(default_factory=lambda: {name: None for name in bm.BENCHMARKS})
    toy_size: int = 200  # the toy held-out split: size and problem seed (as dataset=toy's eval_size, seed)
    toy_seed: int = 0
    toy_task: str = "add"  # as dataset.task (tina/toy.py TASKS)
    batch_size: int = 64  # transformers and accelerate: prompts x samples per generate call
    threads: Optional[int] = 1  # transformers: torch threads while generating (null: torch's default; cpu.yaml: why 1)
    # accelerate, vllm: the python of lighteval 0.13's own environment (it cannot share tina's):
    # the last line of scripts/lighteval-env.sh (accelerate) or scripts/lighteval-env.sh --gpu (vllm)
    lighteval_python: Optional[str] = None
    lighteval_args: list[str] = field(default_factory=list)  # extra CLI arguments for `lighteval accelerate|vllm`
    # lighteval 0.13 strips <think>...</think> before matching by default; the paper's lighteval did not.
    remove_reasoning_tags: bool = False
    keep_merged: bool = False  # keep RUN/eval/<ckpt>/merged (the weights lighteval loaded) after the run
    vllm: VllmConfig = field(default_factory=VllmConfig)
    accelerate: AccelerateConfig = field(default_factory=AccelerateConfig)
    overwrite: bool = False  # re-evaluate even where a results file with the same settings exists
    after_training: bool = False  # read by tina.train: evaluate the run when training completes

    BOUNDS: ClassVar = {
        "n_samples": POSITIVE_INT, "temperature": POSITIVE, "top_p": Range(0, 1, lo_open=True),
        "max_new_tokens": POSITIVE_INT, "limit": POSITIVE_INT, "toy_size": POSITIVE_INT,
        "toy_seed": NON_NEGATIVE_INT, "batch_size": POSITIVE_INT, "threads": POSITIVE_INT, "seeds": NON_NEGATIVE_INT,
    }

    def check(self) -> None:
        check_bounds(self, "eval.")
        _require(len(self.benchmarks) > 0, "eval.benchmarks", f"must name at least one of {sorted(bm.BENCHMARKS)}")
        names = []
        for name in self.benchmarks:
            try:
                names.append(bm.canonical(str(name)))
            except ValueError as e:
                _require(False, "eval.benchmarks", str(e))
        _require(len(set(names)) == len(names), "eval.benchmarks", f"lists a benchmark twice: {self.benchmarks}")
        self.benchmarks = names
        for name in self.data_path:
            _require(name in bm.BENCHMARKS, f"eval.data_path.{name}",
                     f"unknown benchmark; allowed: {sorted(bm.BENCHMARKS)}")
        _require(len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds), "eval.seeds",
                 f"must list at least one seed, none twice, got {self.seeds}")
        _require(self.toy_task in TASKS, "eval.toy_task", f"unknown toy task {self.toy_task!r}; allowed: {list(TASKS)}")
        self.vllm.check()
        self.accelerate.check()
        if self.backend.lighteval:
            script = "scripts/lighteval-env.sh" + (" --gpu" if self.backend == Backend.vllm else "")
            _require(self.lighteval_python is not None and Path(self.lighteval_python).is_file(),
                     "eval.lighteval_python",
                     f"backend {self.backend.value} needs the python of lighteval 0.13's own environment (it "
                     f"cannot share tina's): run `{script}` and pass its last line as eval.lighteval_python= "
                     f"(or set TINA_LIGHTEVAL_PYTHON); got {self.lighteval_python!r}")
        if self.backend == Backend.vllm:
            _require(self.max_new_tokens <= self.vllm.max_model_length, "eval.max_new_tokens",
                     f"{self.max_new_tokens} exceeds eval.vllm.max_model_length={self.vllm.max_model_length}")


@dataclass
class EvaluateConfig:
    run_dir: Optional[str] = None  # a training run directory: evaluate its checkpoints
    base_model: Optional[str] = None  # or a model (hub id or path) on its own; on the command line: model=...
    # Where eval/<checkpoint>/<benchmark>.json go: the run directory, or outputs/base/<model> for a model.
    output_dir: Optional[str] = "${eval_root:${run_dir},${base_model}}"
    eval: EvalConfig = field(default_factory=EvalConfig)

    def check(self) -> None:
        _require((self.run_dir is None) != (self.base_model is None), "run_dir",
                 "give exactly one of run_dir=RUN (a training run) or model=MODEL (a hub id or path), "
                 f"got run_dir={self.run_dir!r}, model={self.base_model!r}")
        if self.run_dir is not None:
            _require(Path(self.run_dir).is_dir(), "run_dir", f"{self.run_dir} is not a directory")
            _require((Path(self.run_dir) / rd.CONFIG).is_file(), "run_dir",
                     f"{self.run_dir} has no {rd.CONFIG}: not a tina run directory")
        self.eval.check()


def _eval_root(run_dir: Optional[str], base_model: Optional[str]) -> Optional[str]:
    if run_dir:
        return str(run_dir)
    if base_model:
        return str(Path("outputs") / "base" / re.sub(r"[^A-Za-z0-9._-]+", "_", str(base_model).strip("/")))
    return None


def _eval_hydra_dir(run_dir: Optional[str], output_dir: Optional[str]) -> str:
    """Hydra's own files and evaluate.log: RUN/eval beside the results (RUN/.hydra is the training's);
    for a model on its own the output dir itself, which analysis.collect then finds as a run."""
    root = str(output_dir or "outputs/eval")
    return f"{root}/eval" if run_dir else root


def register() -> None:
    """Schema and resolvers for the evaluate app (idempotent)."""
    for name, fn in {"eval_root": _eval_root, "eval_hydra_dir": _eval_hydra_dir}.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    ConfigStore.instance().store(name="tina_evaluate_schema", node=EvaluateConfig)


register()


def to_eval_config(cfg: Any) -> EvalConfig:
    """An EvalConfig from an EvalConfig, a DictConfig/dict of its keys, or None (defaults); checked."""
    if isinstance(cfg, EvalConfig):
        ec = dataclasses.replace(cfg)
    else:
        try:
            node = OmegaConf.merge(OmegaConf.structured(EvalConfig), cfg or {})
            ec = OmegaConf.to_object(node)  # type: ignore[assignment]
        except OmegaConfBaseException as e:
            _require(False, "eval", str(e))
    ec.check()
    return ec


def validate(cfg: DictConfig) -> EvaluateConfig:
    """The composed evaluate config as checked typed objects; ConfigError naming the key otherwise."""
    return validate_schema(cfg)


def check_override_keys(overrides: list[str]) -> None:
    """Refuse `eval.chekpoints=...` naming the keys that exist (Hydra's message names only the bad one)."""
    _check_keys(overrides, EvaluateConfig, ["eval"])
