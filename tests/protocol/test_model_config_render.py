"""Triton's model configuration, rendered as JSON and as protobuf from the same typed description."""

from __future__ import annotations

from google.protobuf import json_format

from inferd.model_config import VersionPolicy
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol.model_config import config_json, config_proto
from inferd.repository.description import BatchingDescription, ModelDescription
from inferd.types import TensorSpec


def _description(**changes: object) -> ModelDescription:
    values: dict[str, object] = {
        "name": "m",
        "platform": "python",
        "backend": "python",
        "max_batch_size": 8,
        "inputs": (TensorSpec("text", "BYTES", ()),),
        "outputs": (TensorSpec("score", "FP32", (3,)),),
        "instance_kind": "KIND_CPU",
        "instance_count": 2,
        "version_policy": VersionPolicy(specific=(1, 3)),
        "dynamic_batching": BatchingDescription((4, 8), 500),
    }
    values.update(changes)
    return ModelDescription(**values)  # type: ignore[arg-type]


def test_json_and_protobuf_say_the_same() -> None:
    for description in (
        _description(),
        _description(dynamic_batching=None, version_policy=VersionPolicy(all=True), instance_kind="KIND_GPU"),
        _description(platform="onnxruntime_onnx", backend="onnxruntime", version_policy=VersionPolicy()),
    ):
        from_json = json_format.ParseDict(config_json(description), pb.ModelConfig())
        assert from_json == config_proto(description)


def test_json_fields() -> None:
    document = config_json(_description())
    assert document["backend"] == "python" and document["platform"] == "python"
    assert document["input"] == [{"name": "text", "data_type": "TYPE_STRING", "dims": []}]
    assert document["version_policy"] == {"specific": {"versions": [1, 3]}}
    batching = {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 500}
    assert document["dynamic_batching"] == batching


def test_the_execution_kind_is_a_model_parameter() -> None:
    for execution in ("thread", "process"):
        description = _description(execution=execution)
        assert config_json(description)["parameters"] == {"instance_kind": {"string_value": execution}}
        assert config_proto(description).parameters["instance_kind"].string_value == execution
