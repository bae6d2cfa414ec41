"""Per-model ``config.yaml``: validated at load, unknown keys rejected with the key's name."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inferd.datatypes import DATATYPES
from inferd.errors import ModelLoadError

CONFIG_FILE = "config.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DynamicBatching(_Strict):
    max_queue_delay_ms: float = Field(default=0.0, ge=0, le=60_000)
    preferred_batch_sizes: tuple[int, ...] = ()

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _positive(cls, sizes: tuple[int, ...]) -> tuple[int, ...]:
        if any(size < 1 for size in sizes):
            raise ValueError("preferred batch sizes must be positive")
        return tuple(sorted(set(sizes)))


class OnnxRuntimeOptions(_Strict):
    # 0 lets inferd size the pool: cores / instances, so instances never oversubscribe the CPU.
    intra_op_threads: int = Field(default=0, ge=0)
    inter_op_threads: int = Field(default=0, ge=0)
    graph_optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    execution_providers: tuple[Literal["cpu", "cuda", "tensorrt", "openvino"], ...] = ("cpu",)
    # ORT's workers spin while idle by default, taking CPU the front-end needs (see docs/performance.md).
    allow_spinning: bool = False


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


class InputLimits(_Strict):
    """Per-model bounds on request tensors; None: the server's default (Settings.limits)."""

    max_elements: int | None = Field(default=None, ge=1)
    max_bytes_length: int | None = Field(default=None, ge=0)
    # False: NaN and +-Inf in floating-point inputs are refused with 400.
    allow_nan: bool = True


class ModelConfig(_Strict):
    """What ``config.yaml`` may say; every field is optional and inferred from the model when absent."""

    platform: Literal["onnxruntime_onnx"] = "onnxruntime_onnx"
    # None: inferred from the graph (a symbolic first dim on every input and output means it batches).
    max_batch_size: int | None = Field(default=None, ge=0)
    dynamic_batching: DynamicBatching | None = None
    instances: int = Field(default=1, ge=1, le=64)
    onnxruntime: OnnxRuntimeOptions = OnnxRuntimeOptions()
    inputs: tuple[TensorOverride, ...] = ()
    outputs: tuple[TensorOverride, ...] = ()
    limits: InputLimits = InputLimits()
    # Answer repeated identical requests from the response cache: only for deterministic models.
    response_cache: bool = False
    # Admission control (docs/hardening.md). Requests waiting beyond this many get 503; 0: unbounded.
    max_queue_size: int = Field(default=0, ge=0)
    # Triton's priorities: 1 is served first, priority_levels last; 0 in a request means the default.
    priority_levels: int = Field(default=0, ge=0, le=1000)
    default_priority_level: int = Field(default=0, ge=0)
    # A request's queue deadline when it sends no `timeout` parameter; 0: the server default.
    default_timeout_us: int = Field(default=0, ge=0)
    # Set when no config.yaml exists: batching models then batch dynamically, as Triton's auto-complete does.
    inferred: bool = Field(default=False, exclude=True)

    @model_validator(mode="after")
    def _default_priority_within_levels(self) -> ModelConfig:
        if self.default_priority_level > self.priority_levels:
            raise ValueError(
                f"default_priority_level {self.default_priority_level} exceeds priority_levels "
                f"{self.priority_levels}"
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


def load_model_config(model_dir: Path) -> ModelConfig:
    """Read ``model_dir/config.yaml``; raise ModelLoadError naming the file, the key and the problem."""
    path = model_dir / CONFIG_FILE
    if not path.exists():
        return ModelConfig(inferred=True)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
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
            problems.append(f"'{key}': {reason}")
        raise ModelLoadError(f"{path}: " + "; ".join(problems)) from None
