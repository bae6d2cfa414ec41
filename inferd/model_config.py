"""Per-model ``config.yaml``: validated at load, unknown keys rejected with the key's name."""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inferd.datatypes import DATATYPES
from inferd.errors import ModelLoadError
from inferd.sequence_config import SequenceBatching

CONFIG_FILE = "config.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask, as a container's cpuset sets it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _within_cores(value: int) -> int:
    """Thread counts and instances are capped by the cores: beyond them they only cost memory."""
    cores = available_cores()
    if value > cores:
        raise ValueError(f"{value} exceeds the limit of {cores}, the CPU cores available to this server")
    return value


class DynamicBatching(_Strict):
    max_queue_delay_ms: float = Field(default=0.0, ge=0, le=60_000)
    preferred_batch_sizes: tuple[int, ...] = ()
    # SLO-aware adaptive batching (docs/adaptive-batching.md): the queue delay and batch cap adapt to
    # hold the p99 under this, and requests that would miss it under overload are shed with 503.
    target_p99_ms: float | None = Field(default=None, gt=0, le=60_000)

    @model_validator(mode="before")
    @classmethod
    def _triton_delay(cls, raw: object) -> object:
        """Triton's ``max_queue_delay_microseconds`` means ``max_queue_delay_ms`` / 1000."""
        if not isinstance(raw, dict) or "max_queue_delay_microseconds" not in raw:
            return raw
        if "max_queue_delay_ms" in raw:
            raise ValueError("give max_queue_delay_ms or max_queue_delay_microseconds, not both")
        raw = dict(raw)
        micros = raw.pop("max_queue_delay_microseconds")
        if isinstance(micros, bool) or not isinstance(micros, int | float):
            raise ValueError("max_queue_delay_microseconds must be a number")
        raw["max_queue_delay_ms"] = micros / 1000
        return raw

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _positive(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < 1 for size in sizes):
            raise ValueError("preferred batch sizes must be positive")
        return tuple(sorted(set(sizes)))

    @model_validator(mode="after")
    def _delay_within_target(self) -> DynamicBatching:
        target = self.target_p99_ms
        if target is not None and self.max_queue_delay_ms > target:
            raise ValueError(
                f"max_queue_delay_ms {self.max_queue_delay_ms:g} exceeds target_p99_ms {target:g}: "
                "a request waiting that long misses the target (with target_p99_ms, "
                "max_queue_delay_ms is a ceiling over the delay it chooses)"
            )
        return self


class OnnxRuntimeOptions(_Strict):
    # 0 lets inferd size the pool: cores / instances, so instances never oversubscribe the CPU.
    # At most the cores available (0 stays 0).
    intra_op_threads: int = Field(default=0, ge=0)
    inter_op_threads: int = Field(default=0, ge=0)
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    execution_providers: tuple[Literal["cpu", "cuda", "tensorrt", "openvino"], ...] = ("cpu",)
    # ORT's workers spin while idle by default, taking CPU the front-end needs (see docs/performance.md).
    allow_spinning: bool = False
    # ORT's CPU memory arena keeps freed buffers for reuse (faster, but memory is not returned), and
    # memory patterns pre-plan buffers for fixed shapes. Off trades speed for a smaller footprint.
    enable_cpu_mem_arena: bool = True
    enable_mem_pattern: bool = True

    _threads_within_cores = field_validator("intra_op_threads", "inter_op_threads")(_within_cores)


class PythonOptions(_Strict):
    """Options of ``platform: python`` (a ``model.py`` holding one ``inferd.Model`` subclass)."""

    # Which Model subclass to serve when model.py defines several; None: the only one.
    class_name: str | None = None


class PyTorchOptions(_Strict):
    """Options of ``platform: pytorch`` (TorchScript ``model.pt`` or torch.export ``model.pt2``)."""

    # torch's intra-op pool size for this model's executions, set in each instance's thread (it is
    # per thread); 0: cores / instances, as for onnxruntime. At most the cores available.
    intra_op_threads: int = Field(default=0, ge=0)
    # torch's inter-op pool (torch.jit.fork) is one per process and sized once: the first model that
    # sets it wins, a later different value is logged and ignored; 0: torch's default.
    inter_op_threads: int = Field(default=0, ge=0)

    _threads_within_cores = field_validator("intra_op_threads", "inter_op_threads")(_within_cores)


class FrameworkOptions(_Strict):
    """Options shared by the scikit-learn, XGBoost and LightGBM platforms (inferd/runtimes/tabular)."""

    # auto: serve the ONNX conversion when it agrees with the native model on generated rows, else the
    # native model (the reason is logged and reported); always: a conversion that fails or disagrees
    # fails the load; never: serve the native model.
    convert: Literal["auto", "always", "never"] = "auto"
    # Threads per instance, for the converted graph (ORT's intra-op pool) or the native library
    # (XGBoost, LightGBM); 0: cores / instances. At most the cores available.
    threads: int = Field(default=0, ge=0)

    _threads_within_cores = field_validator("threads")(_within_cores)


class SklearnOptions(FrameworkOptions):
    """Options of ``platform: sklearn`` (``model.joblib`` or ``model.pkl``)."""


class XGBoostOptions(FrameworkOptions):
    """Options of ``platform: xgboost`` (``model.json`` or ``model.ubj``)."""


class LightGBMOptions(FrameworkOptions):
    """Options of ``platform: lightgbm`` (``model.txt``)."""


class EnsembleStep(_Strict):
    """One step of an ensemble, in Triton's field names: which model runs, and how its tensors map
    onto the ensemble's (``input_map``: step input -> ensemble tensor; ``output_map``: step output ->
    ensemble tensor)."""

    model_name: str = Field(min_length=1)
    # -1: the step model's default version, resolved per request (a hot swap of the step applies).
    model_version: int = Field(default=-1, ge=-1)
    input_map: dict[str, str] = Field(min_length=1)
    output_map: dict[str, str] = Field(min_length=1)

    @field_validator("model_version")
    @classmethod
    def _not_zero(cls, version: int) -> int:
        if version == 0:
            raise ValueError("versions are positive integers (or -1: the default version)")
        return version


class EnsembleScheduling(_Strict):
    """Options of ``platform: ensemble`` (Triton's ``ensemble_scheduling``)."""

    step: tuple[EnsembleStep, ...] = Field(min_length=1)


class GenerativeOptions(_Strict):
    """Options of ``platform: generative`` (docs/generative.md): the continuous-batching engine."""

    # Sequences decoded together at one step.
    max_num_seqs: int = Field(default=16, ge=1, le=1024)
    # The KV memory budget in tokens: each running sequence reserves prompt + max new tokens.
    max_tokens_in_flight: int = Field(default=32_768, ge=2)
    # Prompt + generated tokens of one sequence; None: the model's max_position_embeddings.
    context_length: int | None = Field(default=None, ge=2)
    # The most tokens one request may ask for.
    max_tokens: int = Field(default=512, ge=1)
    # A request still waiting for KV memory after this long is refused with 503.
    queue_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    # Requests waiting for KV memory beyond this many are refused at once with 429.
    max_waiting: int = Field(default=256, ge=0)
    # Prompt tokens prefilled per engine iteration, between two decode steps.
    prefill_chunk: int = Field(default=256, ge=1, le=65_536)
    # ONNX Runtime's intra-op threads; 0: the cores available. At most the cores available.
    threads: int = Field(default=0, ge=0)
    # Let ONNX Runtime's idle intra-op threads spin between operators (faster steps on an otherwise
    # idle CPU; CPU taken from the event loop and other models when cores are shared).
    allow_spinning: bool = False

    _threads_within_cores = field_validator("threads")(_within_cores)


class TensorOverride(_Strict):
    name: str
    datatype: str | None = None
    dims: tuple[int, ...] | None = None
    # Inputs only: values outside [min, max] (and NaN, when either is set) are refused with 400.
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _range_in_order(self) -> TensorOverride:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self

    @field_validator("datatype")
    @classmethod
    def _known_datatype(cls, datatype: str | None) -> str | None:
        if datatype is not None and datatype not in DATATYPES:
            raise ValueError(f"unknown datatype '{datatype}', expected one of {sorted(DATATYPES)}")
        return datatype

    @field_validator("dims")
    @classmethod
    def _valid_dims(cls, dims: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if dims is not None and any(d < -1 or d == 0 for d in dims):
            raise ValueError("dims must be positive sizes or -1 (any size)")
        return dims


class VersionPolicy(_Strict):
    """Triton's version policies: ``{latest: N}`` (default 1), ``all``, or ``{specific: [..]}``."""

    latest: int | None = Field(default=None, ge=1)
    specific: tuple[int, ...] | None = Field(default=None, min_length=1)
    all: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_yaml(cls, raw: object) -> object:
        if raw == "all":
            return {"all": True}
        if isinstance(raw, str):
            raise ValueError("expected 'all', {latest: N} or {specific: [versions]}")
        return raw

    @model_validator(mode="after")
    def _one_kind(self) -> VersionPolicy:
        kinds = (self.latest is not None) + (self.specific is not None) + self.all
        if kinds > 1:
            raise ValueError("give one of latest, specific or all")
        if self.specific is not None and any(v < 1 for v in self.specific):
            raise ValueError("versions are positive integers")
        return self

    def select(self, available: list[int]) -> list[int]:
        """The versions this policy serves out of ``available`` (ascending)."""
        ordered = sorted(available)
        if self.all:
            return ordered
        if self.specific is not None:
            return [v for v in ordered if v in self.specific]
        return ordered[-(self.latest or 1) :]

    def as_triton(self) -> dict[str, object]:
        if self.all:
            return {"all": {}}
        if self.specific is not None:
            return {"specific": {"versions": sorted(self.specific)}}
        return {"latest": {"num_versions": self.latest or 1}}


class WarmupSample(_Strict):
    """Requests run on every instance before a version takes traffic (Triton's model_warmup)."""

    batch_size: int = Field(default=1, ge=1)
    # random: uniform data of each input's type; zeros; file: arrays from an .npz next to config.yaml.
    data: Literal["random", "zeros", "file"] = "random"
    file: str | None = None
    count: int = Field(default=1, ge=1, le=1000)

    @field_validator("file")
    @classmethod
    def _inside_the_model_directory(cls, file: str | None) -> str | None:
        # Checked again when read, after following symlinks (inferd/repository/paths.py).
        if file is not None and (
            not file or posixpath.isabs(file) or "\\" in file or ".." in file.split("/")
        ):
            raise ValueError("must be a path inside the model directory, relative to it, without '..'")
        return file

    @model_validator(mode="after")
    def _file_given(self) -> WarmupSample:
        if (self.data == "file") != (self.file is not None):
            raise ValueError("'file' is required with data: file, and only then")
        return self


class GuardRails(_Strict):
    """Checked continuously on the candidate against the stable version; a breach rolls back."""

    # Candidate requests (or shadow comparisons) needed before any judgement.
    min_requests: int = Field(default=20, ge=1)
    max_error_rate: float = Field(default=0.05, ge=0, le=1)
    # Candidate p99 latency / stable p99 latency.
    max_latency_ratio: float = Field(default=3.0, gt=0)
    # p99s below this count as this much in the ratio: sub-millisecond jitter is not a regression.
    latency_floor_ms: float = Field(default=1.0, ge=0)
    # Shadow mode: share of comparisons whose outputs differ by more than ``tolerance``.
    max_disagreement_rate: float = Field(default=0.0, ge=0, le=1)
    tolerance: float = Field(default=1e-5, ge=0)


class RolloutConfig(_Strict):
    """Send ``canary_percent`` of default-version traffic to ``candidate`` (or shadow it)."""

    candidate: int = Field(ge=1)
    canary_percent: float = Field(default=10.0, ge=0, le=100)
    # Shadow: the candidate runs on a copy of the sampled requests; answers always come from stable.
    shadow: bool = False
    # Same routing key (``inferd-routing-key`` header or ``routing_key`` parameter) -> same version.
    sticky: bool = False
    guard: GuardRails = GuardRails()
    # Promote once the candidate passed this many requests and/or seconds (both, when both are set).
    promote_after_requests: int | None = Field(default=None, ge=1)
    promote_after_s: float | None = Field(default=None, gt=0)


class InputLimits(_Strict):
    """Per-model bounds on request tensors; None: the server's default (Settings.limits)."""

    max_elements: int | None = Field(default=None, ge=1)
    max_bytes_length: int | None = Field(default=None, ge=0)
    # False: NaN and +-Inf in floating-point inputs are refused with 400.
    allow_nan: bool = True


class ModelConfig(_Strict):
    """What ``config.yaml`` may say; every field is optional and inferred from the model when absent."""

    # Which runtime serves the model (inferd.runtimes.registry); None: chosen from the version's files.
    # ``backend`` is Triton's spelling (``backend: python``); both may be given when they agree.
    platform: str | None = None
    backend: str | None = None
    # None: inferred from the graph (a symbolic first dim on every input and output means it batches).
    max_batch_size: int | None = Field(default=None, ge=0)
    dynamic_batching: DynamicBatching | None = None
    # A stateful model's scheduler (docs/model-repository.md "Sequence batching").
    sequence_batching: SequenceBatching | None = None
    # Sessions of the model, each with its own memory; at most the cores available.
    instances: int = Field(default=1, ge=1, le=64)
    # How instances execute: worker threads of the server process, or (Python models) one worker
    # process each. Triton's ``KIND_CPU`` means the default, thread.
    instance_kind: Literal["thread", "process"] = "thread"
    # Each runtime's own options, under its platform's name; only that runtime receives them.
    onnxruntime: OnnxRuntimeOptions = OnnxRuntimeOptions()
    python: PythonOptions = PythonOptions()
    pytorch: PyTorchOptions = PyTorchOptions()
    sklearn: SklearnOptions = SklearnOptions()
    xgboost: XGBoostOptions = XGBoostOptions()
    lightgbm: LightGBMOptions = LightGBMOptions()
    generative: GenerativeOptions = GenerativeOptions()
    # platform: ensemble: the steps (docs/model-repository.md "Ensembles").
    ensemble_scheduling: EnsembleScheduling | None = None
    inputs: tuple[TensorOverride, ...] = ()
    outputs: tuple[TensorOverride, ...] = ()
    version_policy: VersionPolicy = VersionPolicy()
    warmup: tuple[WarmupSample, ...] = ()
    rollout: RolloutConfig | None = None
    limits: InputLimits = InputLimits()
    # Answer repeated identical requests from the response cache: only for deterministic models.
    response_cache: bool = False
    # Admission control (docs/hardening.md). Requests waiting beyond this many get 503; 0: unbounded
    # (Triton's meaning); None: the server's default (--max-queue-size, 1024).
    max_queue_size: int | None = Field(default=None, ge=0)
    # Triton's priorities: 1 is served first, priority_levels last; 0 in a request means the default.
    priority_levels: int = Field(default=0, ge=0, le=1000)
    default_priority_level: int = Field(default=0, ge=0)
    # A request's queue deadline when it sends no `timeout` parameter; 0: the server default.
    default_timeout_us: int = Field(default=0, ge=0)
    # A batch still executing after this many seconds fails with 504 and the instance gets a new
    # thread; 0: no limit; None: the server's default (--execution-timeout, 60 s).
    execution_timeout_s: float | None = Field(default=None, ge=0, le=86_400)
    # Run a lone request on an idle model on the event-loop thread when executions of its shape were
    # measured to take at most this long (docs/model-repository.md); "auto": a bound derived from the
    # measured thread hop; None: the server's default.
    inline_execution_max_us: Annotated[int, Field(ge=0, le=10_000)] | Literal["auto"] | None = None
    # Set when no config.yaml exists: batching models then batch dynamically, as Triton's auto-complete does.
    inferred: bool = Field(default=False, exclude=True)

    _instances_within_cores = field_validator("instances")(_within_cores)

    @field_validator("instance_kind", mode="before")
    @classmethod
    def _triton_kind(cls, kind: object) -> object:
        return "thread" if kind == "KIND_CPU" else kind

    @model_validator(mode="after")
    def _default_priority_within_levels(self) -> ModelConfig:
        if self.default_priority_level > self.priority_levels:
            raise ValueError(
                f"default_priority_level {self.default_priority_level} exceeds priority_levels "
                f"{self.priority_levels}"
            )
        return self

    @model_validator(mode="after")
    def _ensemble_batches_in_its_steps(self) -> ModelConfig:
        if self.ensemble_scheduling is not None and self.dynamic_batching is not None:
            raise ValueError(
                "an ensemble has no batcher of its own (each step batches in its model): set "
                "dynamic_batching in the step models' config.yaml"
            )
        return self

    @model_validator(mode="after")
    def _sequences_alone(self) -> ModelConfig:
        if self.sequence_batching is None:
            return self
        clash = [
            key
            for key in ("dynamic_batching", "ensemble_scheduling", "rollout")
            if getattr(self, key) is not None
        ] + (["response_cache"] if self.response_cache else [])
        if clash:
            raise ValueError(
                f"sequence_batching cannot be combined with {', '.join(clash)} (a stateful model's "
                "answers depend on its earlier requests)"
            )
        return self

    @model_validator(mode="after")
    def _preferred_within_max(self) -> ModelConfig:
        if self.dynamic_batching and self.max_batch_size is not None:
            too_big = [s for s in self.dynamic_batching.preferred_batch_sizes if s > self.max_batch_size]
            if too_big:
                raise ValueError(
                    f"dynamic_batching.preferred_batch_sizes {too_big} exceed max_batch_size "
                    f"{self.max_batch_size}"
                )
        return self


def load_model_config(model_dir: Path, override: str | None = None) -> ModelConfig:
    """Read ``model_dir/config.yaml`` (or ``override``, YAML or JSON text, in its place); raise
    ModelLoadError naming the file, the key and the problem."""
    path = model_dir / CONFIG_FILE
    if override is None and not path.exists():
        return ModelConfig(inferred=True)
    if override is not None:
        path = Path("config override")
    try:
        raw = yaml.safe_load(path.read_text() if override is None else override) or {}
    except yaml.YAMLError as exc:
        raise ModelLoadError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    if "inferred" in raw:
        raise ModelLoadError(f"{path}: unknown key 'inferred'")
    try:
        return ModelConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"]) or "(top level)"
            reason = "unknown key" if error["type"] == "extra_forbidden" else error["msg"]
            reason = reason.removeprefix("Value error, ")  # pydantic's prefix on our own checks
            problems.append(f"'{key}': {reason}")
        raise ModelLoadError(f"{path}: " + "; ".join(problems)) from None
