"""What ``GET /v2/models/{m}/config`` reports about a loaded version, as typed values; the protocol
layer renders them in Triton's JSON and protobuf forms."""

from __future__ import annotations

from dataclasses import dataclass

from inferd.model_config import EnsembleStep, VersionPolicy
from inferd.repository.loader import LoadedModel
from inferd.runtimes.base import stream_kind
from inferd.runtimes.ensemble import EnsembleRuntime
from inferd.runtimes.registry import device_kind, instance_kind, platform_of
from inferd.sequence_config import SequenceBatching
from inferd.types import TensorSpec


@dataclass(frozen=True, slots=True)
class BatchingDescription:
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int


@dataclass(frozen=True, slots=True)
class ModelDescription:
    name: str
    # Triton's names: platform (``onnxruntime_onnx``, ``python``) and backend (``onnxruntime``, ``python``).
    platform: str
    backend: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    # KIND_CPU or KIND_GPU, and how many instances execute concurrently.
    instance_kind: str
    instance_count: int
    version_policy: VersionPolicy
    dynamic_batching: BatchingDescription | None
    # Triton's free-form ``parameters``: what a runtime reports of itself (e.g. a tabular model's
    # conversion to ONNX and why it was or was not served).
    parameters: tuple[tuple[str, str], ...] = ()
    # An ensemble's steps (Triton's ensemble_scheduling); empty for every other model. An ensemble
    # has no instances of its own (instance_count 0).
    ensemble_steps: tuple[EnsembleStep, ...] = ()
    # How instances execute (config.yaml's instance_kind): "thread" or "process". Triton has no field
    # for it (its Python backend always uses processes): it is reported as a model parameter.
    execution: str = "thread"
    # A stateful model's sequence_batching, as its config.yaml gives it; None for every other model.
    sequence_batching: SequenceBatching | None = None
    # One request may have many responses (generative models, Python models with predict_stream):
    # Triton's model_transaction_policy.decoupled, which clients such as perf_analyzer read.
    decoupled: bool = False


def runtime_parameters(runtime: object) -> tuple[tuple[str, str], ...]:
    reported = getattr(runtime, "parameters", None)
    return tuple(sorted(reported.items())) if isinstance(reported, dict) else ()


def describe(model: LoadedModel, version_policy: VersionPolicy) -> ModelDescription:
    platform = platform_of(model.runtime)
    policy = model.policy
    batching = None
    if policy.dynamic:
        batching = BatchingDescription(policy.preferred_batch_sizes, policy.max_queue_delay_ns // 1000)
    signature = model.signature
    runtime = model.runtime
    steps = runtime.scheduling.step if isinstance(runtime, EnsembleRuntime) else ()
    return ModelDescription(
        name=model.name,
        platform=platform.triton_platform,
        backend=platform.backend,
        max_batch_size=signature.max_batch_size,
        inputs=signature.inputs,
        outputs=signature.outputs,
        instance_kind=device_kind(model.runtime),
        instance_count=0 if steps else runtime.instances,
        version_policy=version_policy,
        dynamic_batching=batching,
        parameters=tuple(sorted((*runtime_parameters(model.runtime), *model.provenance.items()))),
        ensemble_steps=steps,
        execution=instance_kind(model.runtime),
        sequence_batching=model.config.sequence_batching,
        decoupled=stream_kind(runtime) is not None,
    )
