"""proto/grpc_service.proto stays wire-compatible with Triton's gRPC protocol.

The reference is the descriptors shipped in ``tritonclient`` (its ``service_pb2`` and
``model_config_pb2``): every message, enum and RPC we define must exist there, and every field
must have Triton's number, type, label and message/enum type name, so Triton clients talk to
inferd unchanged. We may define a subset; we may never renumber.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor

from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc

triton_grpc = pytest.importorskip("tritonclient.grpc")
triton_pb = triton_grpc.service_pb2
triton_config_pb = triton_grpc.model_config_pb2

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "inference.GRPCInferenceService"
REQUIRED_RPCS = {
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "ModelStreamInfer",
    "ModelConfig",
    "ModelStatistics",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
}


def _messages(file: FileDescriptor) -> Iterator[Descriptor]:
    """Every message in a file, nested ones (map entries included) too."""
    pending = list(file.message_types_by_name.values())
    while pending:
        message = pending.pop()
        yield message
        pending.extend(message.nested_types)


def _enums(file: FileDescriptor) -> Iterator[EnumDescriptor]:
    yield from file.enum_types_by_name.values()
    for message in _messages(file):
        yield from message.enum_types


OURS = pb.DESCRIPTOR
TRITON_FILES = (triton_pb.DESCRIPTOR, triton_config_pb.DESCRIPTOR)
OUR_MESSAGES = {m.full_name: m for m in _messages(OURS)}
OUR_ENUMS = {e.full_name: e for e in _enums(OURS)}
TRITON_MESSAGES = {m.full_name: m for f in TRITON_FILES for m in _messages(f)}
TRITON_ENUMS = {e.full_name: e for f in TRITON_FILES for e in _enums(f)}


def _fields(message: Descriptor) -> dict[str, tuple[object, ...]]:
    """Field name -> everything about it that the wire format and the generated API depend on.

    Read through ``descriptor_pb2`` so it works the same across protobuf versions.
    """
    proto = descriptor_pb2.DescriptorProto()
    message.CopyToProto(proto)
    oneofs = [oneof.name for oneof in proto.oneof_decl]
    return {
        field.name: (
            field.number,
            descriptor_pb2.FieldDescriptorProto.Type.Name(field.type),
            descriptor_pb2.FieldDescriptorProto.Label.Name(field.label),
            field.type_name,  # ".inference.X" for message and enum fields, "" otherwise
            oneofs[field.oneof_index] if field.HasField("oneof_index") else None,
            field.proto3_optional,
        )
        for field in proto.field
    }


def test_our_proto_defines_the_inference_package() -> None:
    proto = descriptor_pb2.FileDescriptorProto()
    OURS.CopyToProto(proto)
    assert (proto.package, proto.syntax) == ("inference", "proto3")
    assert set(OURS.services_by_name) == {"GRPCInferenceService"}


def test_every_message_and_enum_we_define_exists_in_triton() -> None:
    # Otherwise a misspelt name would silently skip the per-field comparison below.
    assert sorted(set(OUR_MESSAGES) - set(TRITON_MESSAGES)) == []
    assert sorted(set(OUR_ENUMS) - set(TRITON_ENUMS)) == []


@pytest.mark.parametrize("full_name", sorted(OUR_MESSAGES))
def test_message_fields_match_triton(full_name: str) -> None:
    ours = _fields(OUR_MESSAGES[full_name])
    theirs = _fields(TRITON_MESSAGES[full_name])
    for name, spec in ours.items():
        assert name in theirs, f"{full_name}.{name} is not a field in Triton's proto"
        assert spec == theirs[name], f"{full_name}.{name}: (number, type, label, type name, oneof, optional)"
    numbers = [spec[0] for spec in ours.values()]
    assert len(numbers) == len(set(numbers))


@pytest.mark.parametrize("full_name", sorted(OUR_ENUMS))
def test_enum_values_match_triton(full_name: str) -> None:
    ours = {value.name: value.number for value in OUR_ENUMS[full_name].values}
    theirs = {value.name: value.number for value in TRITON_ENUMS[full_name].values}
    assert ours, f"{full_name} has no values"
    assert {name: theirs.get(name) for name in ours} == ours


def test_data_type_enum_is_complete() -> None:
    # The ModelConfig data types are reported for every tensor, so all of Triton's must be there.
    ours = {v.name: v.number for v in OUR_ENUMS["inference.DataType"].values}
    assert ours == {v.name: v.number for v in TRITON_ENUMS["inference.DataType"].values}


def test_service_methods_match_triton() -> None:
    ours = OURS.services_by_name["GRPCInferenceService"]
    theirs = triton_pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
    assert ours.full_name == theirs.full_name == SERVICE
    assert set(ours.methods_by_name) >= REQUIRED_RPCS
    for method in ours.methods:
        assert method.name in theirs.methods_by_name, f"{method.name} is not one of Triton's RPCs"
        triton_method = theirs.methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            triton_method.input_type.full_name,
            triton_method.output_type.full_name,
        ), method.name
        assert (method.client_streaming, method.server_streaming) == (
            triton_method.client_streaming,
            triton_method.server_streaming,
        ), method.name
    stream = ours.methods_by_name["ModelStreamInfer"]
    assert stream.client_streaming and stream.server_streaming


def test_generated_grpc_module_serves_our_service() -> None:
    assert hasattr(pb_grpc, "GRPCInferenceServiceServicer")
    assert hasattr(pb_grpc, "GRPCInferenceServiceStub")
    assert hasattr(pb_grpc, "add_GRPCInferenceServiceServicer_to_server")


def test_coexists_with_tritonclient_and_round_trips_on_the_wire() -> None:
    # Both modules are imported in this process. Our descriptors live in a private pool (the
    # default pool already holds Triton's identically named inference.* types), so the two sets
    # of classes are distinct but share full names and wire format.
    assert pb.DESCRIPTOR.pool is not triton_pb.DESCRIPTOR.pool
    assert pb.DESCRIPTOR.name != triton_pb.DESCRIPTOR.name
    assert pb.ModelInferRequest.DESCRIPTOR.full_name == triton_pb.ModelInferRequest.DESCRIPTOR.full_name

    request = pb.ModelInferRequest(
        model_name="m", model_version="1", id="r", raw_input_contents=[b"\x00" * 8]
    )
    request.parameters["sequence_id"].uint64_param = 2**63
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[1, 2])
    tensor.parameters["binary_data_size"].int64_param = 8
    request.outputs.add(name="y").parameters["classification"].int64_param = 3
    decoded = triton_pb.ModelInferRequest.FromString(request.SerializeToString())
    assert decoded.parameters["sequence_id"].uint64_param == 2**63
    assert decoded.inputs[0].parameters["binary_data_size"].int64_param == 8
    assert pb.ModelInferRequest.FromString(decoded.SerializeToString()) == request

    config = pb.ModelConfigResponse()
    config.config.name = "m"
    config.config.backend = "onnxruntime"
    config.config.max_batch_size = 8
    config.config.input.add(name="x", data_type=pb.TYPE_FP32, dims=[-1, 4])
    config.config.instance_group.add(kind=pb.ModelInstanceGroup.KIND_CPU, count=2)
    config.config.dynamic_batching.preferred_batch_size.append(4)
    config.config.version_policy.latest.num_versions = 1
    triton_config = triton_pb.ModelConfigResponse.FromString(config.SerializeToString())
    assert triton_config.config.input[0].data_type == triton_config_pb.TYPE_FP32
    assert triton_config.config.instance_group[0].kind == triton_config_pb.ModelInstanceGroup.KIND_CPU
    assert triton_config.config.WhichOneof("scheduling_choice") == "dynamic_batching"
    assert pb.ModelConfigResponse.FromString(triton_config.SerializeToString()) == config


def test_generated_code_is_up_to_date() -> None:
    for module in ("grpc_tools", "mypy_protobuf"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gen-proto"), "--check"],
        cwd=ROOT,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
