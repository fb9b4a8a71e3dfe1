"""Typed config schema, registered in Hydra's ConfigStore.

Why typed: the paper's own Dr.GRPO recipe set `scale_reward` where the trainer reads
`scale_rewards`, so its ablation silently ran GRPO. Here every YAML file and override is merged
onto these dataclasses in struct mode, so a misspelt key, a wrong type or an enum value outside
its set fails at composition, before any model is loaded. Checks of values (ranges, divisibility, reward
names, algorithm consistency) live in each section's `check()`, which `validate()` runs on the
composed config (not `__post_init__`: OmegaConf also builds the schema's unresolved defaults).

Each fact has one home: defaults that hold for every recipe are the dataclass defaults below or
the group files in conf/; a recipe changes only what differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, ClassVar, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from tina.errors import (
    FRACTION, NON_NEGATIVE, NON_NEGATIVE_INT, POSITIVE, POSITIVE_INT, ConfigError, Range, require,
)
from tina.evaluate.config import EvalConfig
from tina.prompts import SYSTEM_PROMPTS
from tina.schema import check_override_keys as _check_keys
from tina.schema import validate

PACKAGE_DIR = Path(__file__).resolve().parent


class Dtype(str, Enum):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class AttnImplementation(str, Enum):
    eager = "eager"
    sdpa = "sdpa"
    flash_attention_2 = "flash_attention_2"


@dataclass
class ModelConfig:
    name_or_path: str = "${tina_dir:}/embedded/tiny"
    dtype: Dtype = Dtype.float32
    attn_implementation: AttnImplementation = AttnImplementation.sdpa
    # Jinja chat template replacing the tokenizer's own; null keeps the tokenizer's.
    chat_template: Optional[str] = None

    def check(self) -> None:
        local = self.name_or_path.startswith(("/", "./", "../", "~"))  # else a hub id
        require(not local or Path(self.name_or_path).expanduser().exists(), "model.name_or_path",
                f"no model directory at {self.name_or_path} (a local path, or a hub id such as org/name)")


@dataclass
class LoraConfig:
    rank: int = 32
    alpha: int = "${mul:4,${.rank}}"  # type: ignore[assignment]  # resolved to 4 x rank
    dropout: float = 0.05
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    # PEFT's own flags: rsLoRA scales the update by alpha/sqrt(rank), DoRA adds a learned magnitude.
    use_rslora: bool = False
    use_dora: bool = False

    BOUNDS: ClassVar = {"rank": POSITIVE_INT, "alpha": POSITIVE_INT, "dropout": Range(0, 1, hi_open=True)}

    def check(self) -> None:
        require(len(self.target_modules) > 0, "lora.target_modules", "must name at least one module")


class Scheduler(str, Enum):
    cosine_with_min_lr = "cosine_with_min_lr"
    cosine = "cosine"
    linear = "linear"
    constant = "constant"
    constant_with_warmup = "constant_with_warmup"


@dataclass
class OptimConfig:
    # The learning rate given directly; null when it is scaled from a full fine-tuning rate (below).
    lr: Optional[float] = 1e-6
    # A full fine-tuning rate to scale from: the rate used is lr_from_full x lr_from_full_ratio.
    lr_from_full: Optional[float] = None
    lr_from_full_ratio: float = 10.0
    scheduler: Scheduler = Scheduler.cosine_with_min_lr
    min_lr_rate: float = 0.1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optimizer: str = "adamw_torch"

    BOUNDS: ClassVar = {"lr": POSITIVE, "lr_from_full": POSITIVE, "lr_from_full_ratio": POSITIVE,
                        "min_lr_rate": FRACTION, "warmup_ratio": Range(0, 1, hi_open=True),
                        "weight_decay": NON_NEGATIVE, "max_grad_norm": POSITIVE}

    @property
    def learning_rate(self) -> float:
        """The rate training uses: optim.lr, or optim.lr_from_full x optim.lr_from_full_ratio."""
        return self.lr if self.lr_from_full is None else self.lr_from_full * self.lr_from_full_ratio

    def check(self) -> None:
        if self.lr_from_full is not None:
            require(self.lr is None, "optim.lr",
                    f"give one rate: optim.lr={self.lr} or optim.lr_from_full={self.lr_from_full} "
                    f"(x{self.lr_from_full_ratio:g}); set optim.lr=null to scale from the full fine-tuning rate")
        require(self.lr is not None or self.lr_from_full is not None, "optim.lr",
                "is null: give optim.lr, or optim.lr_from_full to scale from a full fine-tuning rate")


class AlgorithmName(str, Enum):
    grpo = "grpo"
    dr_grpo = "dr_grpo"
    dapo = "dapo"
    bnpo = "bnpo"
    gspo = "gspo"
    clip_higher = "clip_higher"
    mask_truncated = "mask_truncated"
    custom = "custom"


class LossType(str, Enum):
    grpo = "grpo"
    dr_grpo = "dr_grpo"
    dapo = "dapo"
    bnpo = "bnpo"


class ScaleRewards(str, Enum):
    group = "group"
    batch = "batch"
    none = "none"


class ImportanceSampling(str, Enum):
    token = "token"
    sequence = "sequence"  # GSPO: one ratio per completion, the mean of its tokens' log-ratios


# What makes an algorithm that algorithm (conf/algorithm/NAME.yaml gives each one's source). A named
# algorithm with other values is refused: the paper's Dr.GRPO row ran GRPO because nothing checked
# this. `clip_higher` is derived: epsilon_high > epsilon.
_PLAIN = {"importance_sampling_level": ImportanceSampling.token, "clip_higher": False,
          "mask_truncated_completions": False}
ALGORITHM_DEFINITIONS = {
    AlgorithmName.grpo: {"loss_type": LossType.grpo, "scale_rewards": ScaleRewards.group, **_PLAIN},
    AlgorithmName.dr_grpo: {"loss_type": LossType.dr_grpo, "scale_rewards": ScaleRewards.none, **_PLAIN},
    AlgorithmName.dapo: {"loss_type": LossType.dapo, "scale_rewards": ScaleRewards.group,
                         "importance_sampling_level": ImportanceSampling.token, "clip_higher": True,
                         "mask_truncated_completions": True},
    AlgorithmName.bnpo: {"loss_type": LossType.bnpo, "scale_rewards": ScaleRewards.group, **_PLAIN},
    AlgorithmName.gspo: {"loss_type": LossType.grpo, "scale_rewards": ScaleRewards.group,
                         "importance_sampling_level": ImportanceSampling.sequence, "mask_truncated_completions": False},
}
ALGORITHM_DEFINITIONS[AlgorithmName.clip_higher] = {**ALGORITHM_DEFINITIONS[AlgorithmName.grpo], "clip_higher": True}
ALGORITHM_DEFINITIONS[AlgorithmName.mask_truncated] = {**ALGORITHM_DEFINITIONS[AlgorithmName.grpo],
                                                       "mask_truncated_completions": True}


def _text(value) -> str:
    """A config value as it is written in YAML or on the command line."""
    return str(value).lower() if isinstance(value, bool) else getattr(value, "value", value)


@dataclass
class AlgorithmConfig:
    name: AlgorithmName = AlgorithmName.grpo
    loss_type: LossType = LossType.grpo
    scale_rewards: ScaleRewards = ScaleRewards.group
    beta: float = 0.04
    num_generations: int = 4
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    max_prompt_length: Optional[int] = 512
    max_completion_length: int = 3584
    epsilon: float = 0.2
    # Upper clip bound of the ratio; above epsilon is DAPO's clip-higher. Resolved to a number
    # (never TRL's None, whose meaning a release could change).
    epsilon_high: float = "${.epsilon}"  # type: ignore[assignment]
    importance_sampling_level: ImportanceSampling = ImportanceSampling.token
    num_iterations: int = 1
    mask_truncated_completions: bool = False
    # vLLM only: reweight by the ratio of training to vLLM token probabilities (TRL 1.16's default, on).
    vllm_importance_sampling_correction: bool = True

    BOUNDS: ClassVar = {
        "beta": NON_NEGATIVE, "num_generations": Range(2, integer=True),  # >= 2: group-relative advantages
        "temperature": POSITIVE, "top_p": Range(0, 1, lo_open=True), "top_k": NON_NEGATIVE_INT,  # top_k 0: off
        "max_prompt_length": POSITIVE_INT, "max_completion_length": POSITIVE_INT,
        "epsilon": Range(0, 1, lo_open=True), "epsilon_high": Range(0, 1, lo_open=True),
        "num_iterations": POSITIVE_INT,
    }

    @property
    def clip_higher(self) -> bool:
        return self.epsilon_high > self.epsilon

    def check(self) -> None:
        require(self.epsilon_high >= self.epsilon, "algorithm.epsilon_high",
                f"must be >= algorithm.epsilon={self.epsilon} (clip-higher raises only the upper bound), "
                f"got {self.epsilon_high}")
        for key, want in ALGORITHM_DEFINITIONS.get(self.name, {}).items():
            got = getattr(self, key)
            if got == want:
                continue
            if key == "clip_higher":
                need = "epsilon_high > epsilon" if want else "epsilon_high = epsilon"
                raise ConfigError(f"algorithm.epsilon_high: {self.name.value} requires {need}, got epsilon_high="
                                  f"{self.epsilon_high}, epsilon={self.epsilon}; set algorithm.name=custom to run a variant")
            raise ConfigError(f"algorithm.{key}: {self.name.value} requires {key}={_text(want)}, got {_text(got)}; "
                              "set algorithm.name=custom to run a variant")


@dataclass
class DatasetConfig:
    name: str = "toy"
    # Hub id of the data set; null means the embedded toy task (tina/toy.py).
    hub_id: Optional[str] = None
    config_name: Optional[str] = None
    split: str = "train"
    # Local JSONL/Parquet file or folder in the hub's schema, for clusters without hub access.
    path: Optional[str] = None
    problem_field: str = "problem"
    answer_field: str = "solution"
    # How the gold answer is read from answer_field (tina/prompts.py: ANSWER_FORMATS).
    answer_format: str = "as_is"
    # A name in tina/prompts.py SYSTEM_PROMPTS through ${system_prompt:NAME}, or literal text.
    system_prompt: str = "${system_prompt:toy}"
    # Toy task only: which (tina/toy.py TASKS), how many problems to generate, and their seed.
    task: str = "add"
    size: int = 2000
    seed: int = 0
    eval_size: int = 200  # 0: no held-out split
    # Train on a seeded random subset of this many rows (any data set; null: all). A smaller subset
    # is a prefix of a larger one with the same sample_seed, so a data-scaling sweep nests.
    max_samples: Optional[int] = None
    sample_seed: int = 0

    BOUNDS: ClassVar = {"size": POSITIVE_INT, "seed": NON_NEGATIVE_INT, "eval_size": NON_NEGATIVE_INT,
                        "max_samples": POSITIVE_INT, "sample_seed": Range(0, 2**32 - 1, integer=True)}

    @property
    def is_toy(self) -> bool:
        return self.hub_id is None and self.path is None

    @property
    def known_size(self) -> int | None:
        """Training rows before long prompts are dropped, where known without loading: None for hub or local data
        without max_samples."""
        return self.max_samples or (self.size if self.is_toy else None)

    def check(self) -> None:
        from tina.toy import TASKS

        require(self.task in TASKS, "dataset.task", f"unknown toy task {self.task!r}; allowed: {list(TASKS)}")
        require(self.path is None or Path(self.path).exists(), "dataset.path", f"no file or folder at {self.path}")
        require(not self.is_toy or self.max_samples is None or self.max_samples <= self.size, "dataset.max_samples",
                f"must be at most dataset.size={self.size} (the toy set's rows) or null, got {self.max_samples}")


@dataclass
class RewardSpec:
    weight: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class RewardConfig:
    # reward name (tina/rewards.py) -> {weight, params}. A plain dict rather than Dict[str, RewardSpec]
    # because OmegaConf cannot add a typed entry from the command line (+reward.funcs.cosine.weight=1);
    # check() enforces RewardSpec's keys and types instead.
    funcs: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        from tina.rewards import REWARD_NAMES, get_reward, reward_params

        require(len(self.funcs) > 0, "reward.funcs", f"must name at least one of {list(REWARD_NAMES)}")
        specs = {}
        for name, spec in self.funcs.items():
            key = f"reward.funcs.{name}"
            require(name in REWARD_NAMES, key, f"unknown reward {name!r}; allowed: {list(REWARD_NAMES)}")
            spec = spec if isinstance(spec, RewardSpec) else dict(spec or {})
            if isinstance(spec, dict):
                for k in spec:
                    require(k in ("weight", "params"), f"{key}.{k}", "unknown key; allowed: weight, params")
                spec = RewardSpec(**spec)
            Range().check(f"{key}.weight", spec.weight)
            allowed = reward_params(name)
            for param, value in spec.params.items():
                require(param in allowed, f"{key}.params.{param}",
                        f"unknown parameter; allowed: {sorted(allowed) or 'none'}")
                default = allowed[param]
                if isinstance(default, (int, float)) and not isinstance(default, bool):
                    Range(integer=isinstance(default, int)).check(f"{key}.params.{param}", value)
            try:
                get_reward(name, **spec.params)  # the factory's own range checks (e.g. cosine max_len > 0)
            except ValueError as e:
                raise ConfigError(f"{key}.params: {e}") from None
            specs[name] = spec
        self.funcs = specs


class WandbMode(str, Enum):
    disabled = "disabled"
    offline = "offline"
    online = "online"


@dataclass
class WandbConfig:
    mode: WandbMode = WandbMode.disabled  # offline: logs to disk, `wandb sync` later
    project: str = "tina"
    entity: Optional[str] = None
    # Runs of one sweep share a group (the sweep directory), so wandb's UI compares them.
    group: Optional[str] = None


@dataclass
class ComputeConfig:
    bf16: bool = False
    gradient_checkpointing: bool = False
    # Processes (GPUs) per job; each is one torch.distributed rank.
    num_processes: int = 1
    # Completions per device per micro-batch; null puts the whole step in one micro-batch.
    per_device_batch: Optional[int] = None
    use_vllm: bool = False
    vllm_mode: str = "colocate"
    vllm_gpu_memory_utilization: float = 0.4
    vllm_max_model_length: Optional[int] = None
    # GPU type for costing (tina/prices.yaml); null: read from the device at run time.
    gpu_type: Optional[str] = None
    # torch intra-op threads; null keeps torch's default (one per core).
    num_threads: Optional[int] = None

    BOUNDS: ClassVar = {
        "num_processes": POSITIVE_INT, "per_device_batch": POSITIVE_INT,
        "vllm_gpu_memory_utilization": Range(0, 1, lo_open=True), "vllm_max_model_length": POSITIVE_INT,
        "num_threads": POSITIVE_INT,
    }


class EarlyStop(str, Enum):
    off = "off"
    phase = "phase"


@dataclass
class TrainConfig:
    # Horizon of the LR schedule. The paper lays it out for ~2 epochs and stops near one.
    # null: one epoch of the data set (the paper's OpenR1 and OpenThoughts runs).
    max_steps: Optional[int] = 1500
    # Where training really stops (null: max_steps). Changing it does not change the schedule.
    stop_at_step: Optional[int] = None
    save_steps: int = 50
    # Prompts per optimizer step; each gets algorithm.num_generations completions.
    prompts_per_step: int = 8
    logging_steps: int = 1
    seed: int = 42
    output_dir: str = "${tina_output_dir:}"
    early_stop: EarlyStop = EarlyStop.off
    # Logged steps to wait after a detected phase transition before stopping.
    early_stop_patience: int = 20

    BOUNDS: ClassVar = {
        "max_steps": POSITIVE_INT, "stop_at_step": POSITIVE_INT, "save_steps": POSITIVE_INT,
        "prompts_per_step": POSITIVE_INT, "logging_steps": POSITIVE_INT,
        "seed": Range(0, 2**32 - 1, integer=True),  # numpy's seed range
        "early_stop_patience": NON_NEGATIVE_INT,
    }

    def check(self) -> None:
        require(self.stop_at_step is None or self.max_steps is None or self.stop_at_step <= self.max_steps,
                 "train.stop_at_step",
                 f"must be in [1, train.max_steps={self.max_steps}] or null, got {self.stop_at_step}")


@dataclass
class TinaConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    # Evaluation in the same job after training (eval.after_training); tina/evaluate/config.py.
    eval: EvalConfig = field(default_factory=EvalConfig)

    def check(self) -> None:
        for section in (self.model, self.lora, self.optim, self.algorithm, self.dataset, self.reward, self.train):
            section.check()
        if self.eval.after_training:
            self.eval.check()
        require(self.dataset.max_samples is None or self.dataset.max_samples >= self.train.prompts_per_step,
                "dataset.max_samples", f"must be at least train.prompts_per_step={self.train.prompts_per_step} "
                f"(one step's distinct prompts) or null, got {self.dataset.max_samples}")
        completions, per_device = self.completions_per_step, self.per_device_batch
        require(
            per_device > 0 and completions % (per_device * self.compute.num_processes) == 0
            and per_device % self.algorithm.num_generations == 0,
            "compute.per_device_batch",
            f"{per_device} completions per device x {self.compute.num_processes} processes must divide "
            f"train.prompts_per_step x algorithm.num_generations = {completions} and be a multiple of "
            f"algorithm.num_generations={self.algorithm.num_generations}",
        )

    @property
    def completions_per_step(self) -> int:
        return self.train.prompts_per_step * self.algorithm.num_generations

    @property
    def per_device_batch(self) -> int:
        return self.compute.per_device_batch or self.completions_per_step // self.compute.num_processes

    @property
    def gradient_accumulation_steps(self) -> int:
        return self.completions_per_step // (self.per_device_batch * self.compute.num_processes)

    @property
    def stop_step(self) -> int | None:
        """Where training stops; None: at the end of the schedule (one epoch when max_steps is null)."""
        return self.train.stop_at_step or self.train.max_steps


def _system_prompt(name: str) -> str:
    if name not in SYSTEM_PROMPTS:
        raise ConfigError(f"dataset.system_prompt: unknown prompt {name!r}; allowed: {sorted(SYSTEM_PROMPTS)}")
    return SYSTEM_PROMPTS[name]


def _output_dir() -> str:
    """The job's run directory; under `--cfg` (no job yet) the directory it would get."""
    from hydra.core.hydra_config import HydraConfig

    hc = HydraConfig.get()
    return OmegaConf.select(hc, "runtime.output_dir", throw_on_missing=False) or hc.run.dir


def slug(text: str, limit: int = 120) -> str:
    """A directory name from a job's overrides that can be pasted back as an argument: Hydra's
    grammar reads '=' and ',' in a value as syntax, and '/' would nest directories."""
    import hashlib
    import re

    name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text).replace(",", "__").replace("=", "-"))
    return name if len(name) <= limit else f"{name[:limit - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def register() -> None:
    """Register the schema and resolvers (idempotent: Hydra and tests both call it)."""
    for name, fn in {
        "mul": lambda a, b: a * b,
        "tina_dir": lambda: str(PACKAGE_DIR),
        "system_prompt": _system_prompt,
        "tina_output_dir": _output_dir,
        "slug": slug,
    }.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)
    ConfigStore.instance().store(name="tina_schema", node=TinaConfig)


register()


# Keys that did nothing and were removed: what to do instead.
REMOVED = {"train.resume": "removed: a run always continues from the last intact checkpoint in its "
                           "train.output_dir; to start over, choose a new train.output_dir"}


def check_override_keys(overrides: list[str]) -> None:
    """Refuse unknown keys of the training schema, naming the allowed ones (tina.schema)."""
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in REMOVED:
            raise ConfigError(f"{key}: {REMOVED[key]}")
    groups = [p.name for p in (PACKAGE_DIR.parent / "conf").iterdir() if p.is_dir()] + ["sweeps", "study"]
    _check_keys(overrides, TinaConfig, groups)


def schema_defaults() -> dict:
    """Every key's default as the dataclasses give it, resolved (a run directory's path aside): what a
    key added to tina since a run started means for that run on resume (tina.run_dir.check_config)."""
    node = OmegaConf.structured(TinaConfig)
    node.train.output_dir = ""  # its resolver needs Hydra; never compared on resume
    return OmegaConf.to_container(node, resolve=True, enum_to_str=True)


# Each checked job's validate() result, by its config resolved with the run directory left out, kept
# until the job starts: validation's one home per job (tina.start_check and tina.train.main, tina.plan.job_config).
_VALIDATED: dict[str, TinaConfig] = {}


def validate_job(cfg, checking: bool = False) -> TinaConfig:
    """validate(cfg) once per job. A check before the job starts (checking=True: tina.start_check's check
    of a single run, the launchers' check of each job of a sweep) keeps its result in this process;
    the job, when Hydra starts it, takes that result instead of validating again, with its own
    train.output_dir: the one value a check cannot know (Hydra makes the directory) and no check
    reads. A job whose config differs in anything else from every checked one is validated afresh."""
    import copy
    import json

    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    try:
        job = copy.deepcopy(cfg)
        with open_dict(job):
            job.pop("hydra", None)
            job.train.output_dir = ""
        key = json.dumps(OmegaConf.to_container(job, resolve=True, enum_to_str=True), sort_keys=True, default=str)
    except OmegaConfBaseException:
        return validate(cfg)  # unresolvable: validate() names the key, in its own words
    tc = None if checking else _VALIDATED.pop(key, None)
    if tc is None:
        tc = validate(cfg)
        if checking:
            _VALIDATED[key] = copy.deepcopy(tc)
    tc.train.output_dir = str(cfg.train.output_dir)
    return tc
