"""A model's configuration in Triton's forms: the JSON of ``GET /v2/models/{m}/config`` and the
``ModelConfig`` protobuf, both rendered from one ``ModelDescription``."""

from __future__ import annotations

from typing import Any

from inferd.datatypes import TRITON_CONFIG_TYPE
from inferd.model_config import VersionPolicy
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol.sequence_config import sequence_json, sequence_proto
from inferd.repository.description import ModelDescription
from inferd.types import TensorSpec


def config_json(model: ModelDescription) -> dict[str, Any]:
    document: dict[str, Any] = {
        "name": model.name,
        "platform": model.platform,
        "backend": model.backend,
        "max_batch_size": model.max_batch_size,
        "input": [_tensor_json(spec) for spec in model.inputs],
        "output": [_tensor_json(spec) for spec in model.outputs],
        "instance_group": [
            {"name": f"{model.name}_0", "kind": model.instance_kind, "count": model.instance_count}
        ]
        if model.instance_count
        else [],
        "version_policy": model.version_policy.as_triton(),
        "parameters": {"instance_kind": {"string_value": model.execution}},
    }
    if model.ensemble_steps:
        document["ensemble_scheduling"] = {
            "step": [
                {
                    "model_name": step.model_name,
                    "model_version": step.model_version,
                    "input_map": dict(step.input_map),
                    "output_map": dict(step.output_map),
                }
                for step in model.ensemble_steps
            ]
        }
    if model.dynamic_batching is not None:
        document["dynamic_batching"] = {
            "preferred_batch_size": list(model.dynamic_batching.preferred_batch_sizes),
            "max_queue_delay_microseconds": model.dynamic_batching.max_queue_delay_us,
        }
    if model.sequence_batching is not None:
        document["sequence_batching"] = sequence_json(model.sequence_batching)
    if model.decoupled:
        document["model_transaction_policy"] = {"decoupled": True}
    if model.parameters:
        document["parameters"] = {key: {"string_value": value} for key, value in model.parameters}
    return document


def config_proto(model: ModelDescription) -> pb.ModelConfig:
    message = pb.ModelConfig(
        name=model.name,
        platform=model.platform,
        backend=model.backend,
        max_batch_size=model.max_batch_size,
        input=[pb.ModelInput(name=s.name, data_type=_data_type(s), dims=list(s.dims)) for s in model.inputs],
        output=[
            pb.ModelOutput(name=s.name, data_type=_data_type(s), dims=list(s.dims)) for s in model.outputs
        ],
        instance_group=[
            pb.ModelInstanceGroup(
                name=f"{model.name}_0",
                kind=pb.ModelInstanceGroup.Kind.Value(model.instance_kind),
                count=model.instance_count,
            )
        ]
        if model.instance_count
        else [],
        version_policy=_version_policy_proto(model.version_policy),
        parameters={"instance_kind": pb.ModelParameter(string_value=model.execution)},
    )
    if model.ensemble_steps:
        message.ensemble_scheduling.CopyFrom(
            pb.ModelEnsembling(
                step=[
                    pb.ModelEnsembling.Step(
                        model_name=step.model_name,
                        model_version=step.model_version,
                        input_map=step.input_map,
                        output_map=step.output_map,
                    )
                    for step in model.ensemble_steps
                ]
            )
        )
    if model.dynamic_batching is not None:
        message.dynamic_batching.CopyFrom(
            pb.ModelDynamicBatching(
                preferred_batch_size=list(model.dynamic_batching.preferred_batch_sizes),
                max_queue_delay_microseconds=model.dynamic_batching.max_queue_delay_us,
            )
        )
    if model.sequence_batching is not None:
        message.sequence_batching.CopyFrom(sequence_proto(model.sequence_batching))
    if model.decoupled:
        message.model_transaction_policy.decoupled = True
    for key, value in model.parameters:
        message.parameters[key].string_value = value
    return message


def _tensor_json(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "data_type": TRITON_CONFIG_TYPE[spec.datatype], "dims": list(spec.dims)}


def _data_type(spec: TensorSpec) -> pb.DataType.ValueType:
    return pb.DataType.Value(TRITON_CONFIG_TYPE[spec.datatype])


def _version_policy_proto(policy: VersionPolicy) -> pb.ModelVersionPolicy:
    if policy.all:
        return pb.ModelVersionPolicy(all=pb.ModelVersionPolicy.All())
    if policy.specific is not None:
        return pb.ModelVersionPolicy(
            specific=pb.ModelVersionPolicy.Specific(versions=sorted(policy.specific))
        )
    return pb.ModelVersionPolicy(latest=pb.ModelVersionPolicy.Latest(num_versions=policy.latest or 1))
