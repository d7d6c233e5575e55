"""The one configuration schema of a run.

Defaults live here once (they are the spec's, `ALGORITHM.md`); YAML files in `configs/` only
override. Loading composes files left to right, then `--set a.b=value` overrides (each value read
by its key's declared type, never as YAML), then validates:
an unknown key, a wrong type or an out-of-range value raises `ConfigError` naming the key,
before anything heavy (a model, a GPU) is touched.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import os
from pathlib import Path
from types import UnionType
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ireasoner.rewards.config import RewardConfig

# The language model's projections only: naming gate/up/down alone would also match the vision
# tower's MLPs, which vLLM cannot serve as LoRA (spec §4).
LANGUAGE_MODEL_LORA_TARGETS = (
    r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"
)

# The authors' instructions (spec §4), which the step reward depends on: numbered steps, one
# concrete claim each, nothing outside the tags, the question last. Replace either with any
# exact wording through solver.prompt / proposer.prompt.
DEFAULT_SOLVER_PROMPT = (
    "Answer the question about the image. Reason inside <think> </think> in numbered steps, "
    "one per line, written as \"Step 1: ...\", \"Step 2: ...\", and so on. Each step states "
    "one concrete visual or structural claim about the image (what is shown, where, how many, "
    "which value), not a restatement of the question. Then give only the short final answer "
    "(a number, a word, a short phrase or an option letter) inside <answer> </answer>. Write "
    "nothing outside these two tags.\n\n"
    "Example:\n"
    "<think>\n"
    "Step 1: The chart has three bars labelled A, B and C.\n"
    "Step 2: Bar B reaches 40, above A at 25 and C at 10.\n"
    "Step 3: So B is the largest value, 40.\n"
    "</think>\n"
    "<answer>40</answer>\n\n"
    "Question: {question}"
)
DEFAULT_PROPOSER_PROMPT = (
    "Look at the image and write one question about it that has a single short answer (a "
    "number, a word, a short phrase or an option letter) and can be answered from the image "
    "alone. The question must not be ambiguous, must not be trivial counting, must not contain "
    "or hint at its answer, and must make units clear when the answer is numeric. Keep it to "
    "one or two sentences. Write the question inside <question> </question>, then a brief "
    "reason why it is non-trivial but solvable from the image inside <rationale> </rationale>. "
    "Write nothing else."
)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ModelConfig(Section):
    # A hub id, a local checkpoint directory, or "tiny": the project's own tiny Qwen2.5-VL,
    # built offline from a seed and cached (see ireasoner.model.tiny).
    name_or_path: str = "Qwen/Qwen2.5-VL-7B-Instruct"
    tiny_seed: int = Field(0, ge=0)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2"] = "auto"
    gradient_checkpointing: bool = False
    # Run Python code shipped with a checkpoint (transformers' trust_remote_code): off, as a
    # downloaded model must not execute code here unless asked. Qwen2.5-VL never needs it.
    trust_remote_code: bool = False
    # Image pixel budget handed to the processor (Qwen2.5-VL resizes to fit it).
    min_pixels: int = Field(3136, ge=784)
    max_pixels: int = Field(1003520, ge=784)

    @model_validator(mode="after")
    def _pixels_ordered(self) -> ModelConfig:
        if self.min_pixels > self.max_pixels:
            raise ValueError("min_pixels must not exceed max_pixels")
        return self


class LoraConfig(Section):
    rank: int = Field(16, ge=1, le=512)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str = LANGUAGE_MODEL_LORA_TARGETS


class HFDataConfig(Section):
    """data.source "hf": `datasets.load_dataset(name, config, split=split, streaming=...)`;
    offline (HF_DATASETS_OFFLINE=1) it is read from the local datasets cache."""

    name: str | None = None  # a Hub id ("HuggingFaceM4/ChartQA") or a local dataset directory
    config: str | None = None
    split: str = "train"
    # Read rows as a stream (no full download or Arrow copy): needs `limit`, the rows read.
    streaming: bool = False
    limit: int | None = Field(None, ge=1)  # only the first `limit` rows, in the split's order
    cache_dir: str | None = None  # the datasets cache (default: HF_DATASETS_CACHE)


class DataConfig(Section):
    # "world": the miniature world's train split (ireasoner.data.world), synthetic_count images.
    source: Literal["synthetic", "world", "directory", "parquet", "dataset", "hf"] = "synthetic"
    path: str | None = None
    image_column: str = "image"
    synthetic_count: int = Field(200, ge=1)
    seed: int = 0
    shuffle: bool = True
    # Images above these are refused (decompression bombs) or skipped, with the reason recorded.
    max_file_bytes: int = Field(64 * 1024 * 1024, ge=1024)
    max_decoded_pixels: int = Field(100_000_000, ge=1024)
    # Larger images are downscaled to this many pixels before they are stored or sent anywhere.
    pixel_budget: int = Field(1_003_520, ge=784)
    # Decoded images are kept in a least-recently-used cache of this many MB (0 = none): images
    # are decoded when a stage needs them, never all at start (ireasoner.data.cache).
    image_cache_mb: int = Field(512, ge=0)

    hf: HFDataConfig = HFDataConfig()

    @model_validator(mode="after")
    def _path_when_needed(self) -> DataConfig:
        if self.source in ("directory", "parquet", "dataset") and not self.path:
            raise ValueError(f"data.path is required when data.source is {self.source!r}")
        if self.source == "hf" and not self.hf.name:
            raise ValueError("data.hf.name is required when data.source is 'hf'")
        if self.source == "hf" and self.hf.streaming and self.hf.limit is None:
            raise ValueError("data.hf.limit is required when data.hf.streaming is true: a "
                             "stream is read up to its limit, never to its end")
        return self


class ProposerConfig(Section):
    prompt: str = DEFAULT_PROPOSER_PROMPT
    max_new_tokens: int = Field(128, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    update_every: int = Field(5, ge=1)
    # update_iteration: each update trains on that iteration's questions only (published);
    # since_last_update: on every question asked since the previous update.
    train_on: Literal["update_iteration", "since_last_update"] = "update_iteration"
    # What to do with a proposal that has no <question>: skip the image, or ask this instead.
    on_unparsable: Literal["skip", "fallback_question"] = "fallback_question"
    fallback_question: str = "What is the largest value shown in the image?"


class SolverConfig(Section):
    prompt: str = DEFAULT_SOLVER_PROMPT
    num_rollouts: int = Field(5, ge=1, le=64)
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _prompt_has_question(self) -> SolverConfig:
        if "{question}" not in self.prompt:
            raise ValueError("solver.prompt must contain the placeholder {question}")
        return self


class OptimizationConfig(Section):
    # lr = 0 is a valid control run: the same passes, the adapters never move.
    lr: float = Field(1e-6, ge=0, le=1)
    # per_rollout: one AdamW step per rollout, β and b after each (the published update, spec
    # §4); batched: one step per iteration on the mean loss (fewer passes, ~N x fewer steps).
    update: Literal["per_rollout", "batched"] = "per_rollout"
    # log π(y) of the loss as the token mean (published) or the token sum (Eq. 7 literally).
    token_reduction: Literal["mean", "sum"] = "mean"
    weight_decay: float = Field(0.01, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    micro_batch_size: int = Field(5, ge=1)
    baseline_momentum: float = Field(0.9, ge=0, lt=1)
    # Stored and used as a spec §4 bf16-on-GPU switch: "auto" = bf16 on CUDA, fp32 on CPU.
    precision: Literal["auto", "float32", "bfloat16"] = "auto"


class KLConfig(Section):
    estimator: Literal["exact", "k3"] = "exact"
    beta_init: float = Field(1e-3, ge=0)
    target: float = Field(0.02, gt=0)
    adapt_rate: float = Field(0.10, ge=0)
    beta_min: float = Field(1e-8, ge=0)
    beta_max: float = Field(1e2, gt=0)
    adaptive: bool = True

    @model_validator(mode="after")
    def _bounds(self) -> KLConfig:
        if not self.beta_min <= self.beta_max:
            raise ValueError("kl.beta_min must not exceed kl.beta_max")
        if self.adaptive and not self.beta_min <= self.beta_init <= self.beta_max:
            raise ValueError("kl.beta_init must lie in [kl.beta_min, kl.beta_max]")
        return self


class VLLMServerConfig(Section):
    """rollout.engine "vllm_server": a vLLM OpenAI-compatible server in its own environment
    (docs/engines.md). With `url` None the project starts one and stops it with the run."""

    url: str | None = None  # e.g. http://gpu-host:8000 (a server someone else started)
    # Interpreter that runs `-m vllm.entrypoints.openai.api_server`: None = .venv-vllm/bin/python
    # (scripts/setup_vllm_server.sh) if it exists, else the current interpreter.
    python: str | None = None
    host: str = "127.0.0.1"  # loopback: the server has no authentication
    port: int = Field(0, ge=0, le=65535)  # 0 = a free port
    startup_timeout_s: float = Field(600.0, gt=0)
    request_timeout_s: float = Field(600.0, gt=0)
    extra_args: list[str] = []  # appended to the server's command line

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https:// (got {value!r})")
        return value.rstrip("/") if value is not None else None


class RolloutConfig(Section):
    engine: Literal["auto", "transformers", "vllm", "vllm_server"] = "auto"
    gpu_memory_utilization: float = Field(0.45, gt=0, le=1)
    # vLLM on CPU: the KV cache's size in MiB, fixed. vLLM's default there is a fraction of
    # the NUMA node's free memory, which the page cache of a fresh install can leave negative.
    cpu_kv_cache_mib: int = Field(256, ge=16)
    tensor_parallel_size: int = Field(1, ge=1)
    max_model_len: int = Field(4096, ge=64)
    max_lora_rank: int = Field(16, ge=1)
    # Release vLLM's GPU memory around the policy update when both share one GPU.
    sleep_during_update: bool = True
    # Tokens a random or collapsed model must never emit (they break re-encoding).
    suppress_special_tokens: bool = True
    # Ends a rollout that repeats the same n-gram this many times in a row (runaway output).
    max_repeats: int = Field(0, ge=0)
    # transformers engine: requests sampled together in one generate call (0 = all of an
    # iteration's; 1 = one at a time), and "static" preallocates the KV cache (on CUDA,
    # transformers then compiles the decoding step).
    requests_per_call: int = Field(0, ge=0)
    kv_cache: Literal["dynamic", "static"] = "dynamic"
    server: VLLMServerConfig = VLLMServerConfig()


class ScheduleConfig(Section):
    iterations: int = Field(2500, ge=1)
    images_per_iteration: int = Field(1, ge=1)


class EvaluationConfig(Section):
    every: int = Field(0, ge=0)  # 0 = never during training
    # lmms-eval task names of the paper's eight benchmarks. MathVista and MathVerse are scored
    # by an LLM judge in lmms-eval: they need OPENAI_API_KEY (else they are recorded as failed);
    # mathvista_testmini_rules / mathverse_testmini_rules score them by rules (docs/evaluation.md).
    tasks: list[str] = [
        "chartqa",
        "mathvista_testmini_format",
        "mathvision_test",
        "mathverse_testmini",
        "infovqa_val",
        "ai2d",
        "scienceqa_img",
        "mmmu_val",
    ]
    backend: Literal["auto", "vllm", "transformers"] = "auto"
    batch_size: int = Field(1, ge=1)
    limit: int | None = Field(None, ge=1)
    max_new_tokens: int = Field(512, ge=1)
    # Where datasets live when the hub cannot be reached (HF datasets cache or a directory).
    dataset_cache: str | None = None
    include_path: str | None = None
    # Extra lmms-eval model arguments, e.g. {gpu_memory_utilization: 0.3} for its vllm class
    # next to a resident rollout engine (docs/evaluation.md).
    model_args: dict[str, str | int | float | bool] = {}


class StorageConfig(Section):
    # A directory, or an fsspec URL (s3://bucket/run, gs://..., file:///shared/run) that the
    # store works on through a local mirror (docs/artifacts.md); credentials and endpoints come
    # from the environment, never from here (the config is written into the run).
    run_dir: str = "runs/default"
    # At a URL, a trainer's lease on the run expires this long after its last renewal (it is
    # renewed every quarter of it): how long a crashed trainer keeps the next one waiting.
    lease_seconds: float = Field(60.0, ge=5)
    # Keep adapter checkpoints of every Nth iteration (0 = only the latest).
    keep_checkpoints_every: int = Field(0, ge=0)
    # Merge each full block of this many completed iterations into one file per table
    # (storage.compaction; 0 = never): whole-run queries then open tens of files, not thousands.
    compact_every: int = Field(100, ge=0)

    @field_validator("run_dir")
    @classmethod
    def _reachable(cls, value: str) -> str:
        if "://" in value:  # a URL (storage.remote.is_url); storage imports this module
            from storage.remote import check_url

            check_url(value)
        return value


DEFAULT_CRITIC_PROMPT = (
    "{question}\n\nA previous answer to this question was judged wrong:\n{response}\n\n"
    "Look at the image again. Point out the step where this answer stopped following what the "
    "image shows, and state what the image actually shows there. Be brief."
)
DEFAULT_RECTIFIER_PROMPT = (
    "{question}\n\nA previous answer was judged wrong:\n{response}\n\nA critique of it:\n"
    "{critique}\n\nLook at the image again and answer anew: describe the relevant visual "
    "evidence inside <desc> </desc>, reason inside <think> </think>, then give only the final "
    "answer as \\boxed{...}."
)


class IVRConfig(Section):
    group_size: int = Field(8, ge=2, le=64)
    format_weight: float = Field(0.1, ge=0, le=1)
    erosion_threshold: float = Field(0.5, ge=0, le=1)
    max_rectified: int = Field(2, ge=0)
    rectify_rounds: int = Field(3, ge=0)
    shaping_gamma: float = Field(0.1, gt=0)
    clip_epsilon: float = Field(0.2, gt=0, lt=1)
    advantage_epsilon: float = Field(1e-6, gt=0)
    labels: Literal["dataset", "pseudo"] = "pseudo"
    critique_max_new_tokens: int = Field(128, ge=1)
    sft_data: str | None = None
    sft_epochs: int = Field(1, ge=1)
    sft_lr: float = Field(1e-5, gt=0, le=1)
    # Placeholders: {question}, {response} (the failed rollout) and, for the rectifier, {critique}.
    critic_prompt: str = DEFAULT_CRITIC_PROMPT
    rectifier_prompt: str = DEFAULT_RECTIFIER_PROMPT
    # ivr.labels = dataset: the label columns next to data.image_column (Parquet sources) or in
    # the directory's manifest.parquet / manifest.jsonl (one row per `image`, its relative
    # path); a synthetic source labels each image with its first generated question.
    question_column: str = "question"
    answer_column: str = "answer"

    @model_validator(mode="after")
    def _prompts_have_placeholders(self) -> IVRConfig:
        needed = {"critic_prompt": ("{question}", "{response}"),
                  "rectifier_prompt": ("{question}", "{response}", "{critique}")}
        for name, placeholders in needed.items():
            missing = [p for p in placeholders if p not in getattr(self, name)]
            if missing:
                raise ValueError(f"ivr.{name} must contain {', '.join(missing)}")
        return self


class LoggingConfig(Section):
    # Experiment trackers that receive each completed iteration's metrics row, a table of sample
    # rollouts every `samples_every` iterations and the evaluation results (ireasoner.tracking).
    trackers: list[Literal["tensorboard", "mlflow", "wandb"]] = []
    samples_every: int = Field(10, ge=0)   # 0 = no sample tables
    samples: int = Field(16, ge=1)         # rollouts per sample table
    # Where the trackers write (default: <run>/tracking; a local path, also for runs at a URL).
    dir: str | None = None
    # MLflow: experiment name (also the W&B project); the tracking URI defaults to a SQLite
    # file under `dir` (MLflow 3 refuses new plain-file stores).
    experiment: str = "ireasoner"
    mlflow_uri: str | None = None
    # W&B: offline files under `dir` (`wandb sync` uploads them) unless set to online.
    wandb_mode: Literal["offline", "online"] = "offline"
    wandb_entity: str | None = None

    @field_validator("trackers")
    @classmethod
    def _once_each(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError(f"a tracker is named twice: {value}")
        return value


class TrainerConfig(Section):
    # A registered trainer (ireasoner.trainers.registry: ireasoner, ivr_r1); checked against
    # the registry before a run starts, so a trainer needs no line here.
    kind: str = Field("ireasoner", pattern=r"^[a-z][a-z0-9_]*$")
    seed: int = 0


class Config(Section):
    trainer: TrainerConfig = TrainerConfig()
    model: ModelConfig = ModelConfig()
    lora: LoraConfig = LoraConfig()
    data: DataConfig = DataConfig()
    proposer: ProposerConfig = ProposerConfig()
    solver: SolverConfig = SolverConfig()
    rewards: RewardConfig = RewardConfig()
    optimization: OptimizationConfig = OptimizationConfig()
    kl: KLConfig = KLConfig()
    rollout: RolloutConfig = RolloutConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    storage: StorageConfig = StorageConfig()
    ivr: IVRConfig = IVRConfig()
    logging: LoggingConfig = LoggingConfig()

    @model_validator(mode="after")
    def _cross_section(self, info: ValidationInfo) -> Config:
        if self.rollout.max_lora_rank < self.lora.rank:
            raise ValueError(
                f"rollout.max_lora_rank ({self.rollout.max_lora_rank}) must be >= lora.rank "
                f"({self.lora.rank}): vLLM could not load the adapter"
            )
        # A stored run trains on as it was configured (a v1 run's absolute λ counts may
        # outlast a short schedule); a new config must let λ reach λ_max.
        stored = bool((info.context or {}).get("stored"))
        rewards, iterations = self.rewards, self.schedule.iterations
        if not stored and rewards.lambda_mode == "schedule" and rewards.lambda_max > 0:
            warm, ramp = rewards.lambda_span(iterations)
            if warm + ramp > iterations:
                raise ValueError(
                    f"λ never reaches rewards.lambda_max within schedule.iterations "
                    f"({iterations}): rewards.warmup_iterations/ramp_iterations (or "
                    f"rewards.warmup_fraction/ramp_fraction) give T_warm {warm} + T_ramp "
                    f"{ramp} = {warm + ramp}; shorten them or use the fractions")
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def fingerprint(self) -> str:
        """A stable hash of the whole config (sorted JSON)."""
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def default_cache_dir() -> Path:
    """Where the project keeps what it builds or mirrors (the tiny model, run mirrors)."""
    return Path(os.environ.get("IREASONER_CACHE", Path.home() / ".cache" / "ireasoner"))


class ConfigError(ValueError):
    """A configuration that cannot be run; the message names the offending key."""


def load_config(paths: list[str | Path] | str | Path | None = None,
                overrides: list[str] | None = None) -> Config:
    """Compose YAML files left to right, apply `key.path=value` overrides, validate."""
    if paths is None:
        paths = []
    elif isinstance(paths, (str, Path)):
        paths = [paths]
    merged: dict[str, Any] = {}
    for path in paths:
        merged = deep_merge(merged, read_yaml(path))
    for item in overrides or []:
        merged = deep_merge(merged, parse_override(item))
    return config_from_dict(merged)


def config_from_dict(data: dict[str, Any], *, stored: bool = False) -> Config:
    """Validate; `stored` marks a run's own config (checks for new runs only are skipped)."""
    try:
        return Config.model_validate(data, context={"stored": stored})
    except ValidationError as err:
        raise ConfigError(_describe(err)) from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return data


def parse_override(item: str) -> dict[str, Any]:
    """`rewards.gamma=0.5` -> {"rewards": {"gamma": 0.5}}.

    The value is read by its key's declared type, never as YAML (YAML would read `runs/exp #2`
    as `runs/exp` and `2024` as an integer): a string key takes the text verbatim; a number or
    a bool is parsed as one; a list takes JSON (`["a", "b"]`) or comma-separated items
    (`a,b` or `[a, b]`); a mapping or a section takes JSON; `null` unsets a key that may be
    null. An unknown key is a ConfigError naming it.
    """
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {item!r} must look like section.key=value")
    parts = key.split(".")
    value = _parse_typed(key, _annotation_at(key, parts), raw)
    nested: dict[str, Any] = {}
    cursor = nested
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def _annotation_at(key: str, parts: list[str]) -> Any:
    """The declared type of the dotted key, walking the schema section by section."""
    model: type[BaseModel] = Config
    for depth, part in enumerate(parts):
        field = model.model_fields.get(part)
        if field is None:
            where = ".".join(parts[:depth]) or "the top level"
            raise ConfigError(f"unknown key '{'.'.join(parts[:depth + 1])}'; allowed in {where}: "
                              f"{', '.join(sorted(model.model_fields))}")
        annotation = field.annotation
        if depth == len(parts) - 1:
            return annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            raise ConfigError(f"unknown key '{key}': '{'.'.join(parts[:depth + 1])}' is a "
                              "value, not a section")
        model = annotation
    raise AssertionError("unreachable")


def _parse_typed(key: str, annotation: Any, raw: str) -> Any:
    args = [a for a in get_args(annotation) if a is not type(None)]
    nullable = get_origin(annotation) in (Union, UnionType) and len(args) < len(
        get_args(annotation))
    if nullable:
        if raw.strip() == "null":
            return None
        annotation = functools.reduce(operator.or_, args)
    origin = get_origin(annotation) or annotation
    try:
        if origin in (list, tuple, set):
            text = raw.strip()
            if text.startswith("[") and _is_json(text):
                return TypeAdapter(annotation).validate_json(text)
            text = text.removeprefix("[").removesuffix("]")
            item_type = (get_args(annotation) or (str,))[0]
            pieces = [piece.strip() for piece in text.split(",")] if text.strip() else []
            return [_parse_typed(key, item_type, piece) for piece in pieces]
        if origin is dict or (isinstance(origin, type) and issubclass(origin, BaseModel)):
            return _json_mapping(key, raw)  # merged with the rest, then validated
        if annotation is str or origin is Literal:
            return raw  # verbatim; a Literal is checked against its choices on validation
        return TypeAdapter(annotation).validate_strings(raw.strip())
    except ValidationError as err:
        reason = err.errors()[0]["msg"]
        raise ConfigError(f"override {key}: {raw!r} is not a valid {_type_name(annotation)}: "
                          f"{reason}") from None


def _json_mapping(key: str, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as err:
        raise ConfigError(f"override {key}: {raw!r} is not a JSON object: {err}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"override {key}: {raw!r} is not a JSON object")
    return value


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def diff_configs(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> dict[str, tuple]:
    """Dotted keys whose values differ, with (old, new)."""
    changed: dict[str, tuple] = {}
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        dotted = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            changed.update(diff_configs(a, b, dotted + "."))
        elif a != b:
            changed[dotted] = (a, b)
    return changed


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<config>"
        if e["type"] == "extra_forbidden":
            section = _section_at(e["loc"][:-1])
            allowed = ", ".join(sorted(section.model_fields)) if section else "?"
            lines.append(f"unknown key '{key}'; allowed here: {allowed}")
        else:
            got = e.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{key}: {e['msg']}{shown}")
    return "invalid config:\n  " + "\n  ".join(lines)


def _section_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for part in loc:
        field = model.model_fields.get(str(part))
        if field is None or not isinstance(field.annotation, type) or not issubclass(
            field.annotation, BaseModel
        ):
            return None
        model = field.annotation
    return model


# Keys a resumed run may change: they affect speed, bookkeeping or evaluation, never what is
# trained (a prefix ending in "." covers a whole section).
RESUME_NEUTRAL_KEYS = (
    "schedule.iterations",
    "evaluation.",
    "storage.",
    "logging.",
    "rollout.gpu_memory_utilization",
    "rollout.cpu_kv_cache_mib",
    "rollout.tensor_parallel_size",
    "rollout.sleep_during_update",
    "rollout.server.",
    "optimization.micro_batch_size",
    "model.gradient_checkpointing",
    "data.image_cache_mb",
)


# λ's span is compared resolved (T_warm, T_ramp), not key by key: fractions of a longer
# schedule.iterations are another span, absolute counts equal to the old span are the same.
LAMBDA_SPAN_KEYS = ("rewards.warmup_fraction", "rewards.ramp_fraction",
                    "rewards.warmup_iterations", "rewards.ramp_iterations")
LAMBDA_SPAN = "rewards λ span (T_warm, T_ramp)"


def training_changes(old: dict[str, Any], new: dict[str, Any]) -> dict[str, tuple]:
    """The keys whose change would make a resumed run train differently."""
    changed = {
        key: values
        for key, values in diff_configs(old, new).items()
        if key not in LAMBDA_SPAN_KEYS
        and not any(key == k or (k.endswith(".") and key.startswith(k))
                    for k in RESUME_NEUTRAL_KEYS)
    }
    spans = [lambda_span_of(c) for c in (old, new)]
    if spans[0] != spans[1]:
        changed[LAMBDA_SPAN] = (spans[0], spans[1])
    return changed


def lambda_span_of(config: dict[str, Any]) -> tuple[int, int]:
    rewards = RewardConfig.model_validate(config.get("rewards", {}))
    return rewards.lambda_span(config.get("schedule", {}).get("iterations", 2500))


def training_summary(cfg: Config) -> list[str]:
    """What `ireasoner config` prints under the YAML: how this config trains, resolved."""
    opt, rewards = cfg.optimization, cfg.rewards
    warm, ramp = rewards.lambda_span(cfg.schedule.iterations)
    steps = {"per_rollout": "one AdamW step per rollout (published)",
             "batched": "one AdamW step per iteration on the mean loss"}[opt.update]
    return [
        f"update: {opt.update}: {steps}",
        f"token reduction: {opt.token_reduction} of the response's token log-probs",
        f"λ: 0 until iteration {warm}, then to {rewards.lambda_max} over {ramp} iterations "
        f"(mode {rewards.lambda_mode}, of {cfg.schedule.iterations})",
        f"proposer trains on: {cfg.proposer.train_on}, every {cfg.proposer.update_every} "
        "iterations",
        f"proposer reward: g(H_p), unparsable answers {rewards.proposer_unparsable}",
    ]
