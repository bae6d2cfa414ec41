"""The gRPC interceptor's helpers: peer addresses, metadata credentials, and the method table."""

from __future__ import annotations

import pytest

from inferd.grpc.access import _RULES, _address, _credential
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.security.apis import Api
from inferd.security.gate import Access


@pytest.mark.parametrize(
    ("peer", "address"),
    [("ipv4:127.0.0.1:5000", "127.0.0.1"), ("ipv6:[::1]:5000", "::1"), ("unix:/tmp/s", "/tmp/s")],
)
def test_peer_address(peer: str, address: str) -> None:
    assert _address(peer) == address


def test_metadata_credentials() -> None:
    assert _credential((("authorization", "Bearer k1"), ("x-api-key", "k2"))) == "k1"
    assert _credential((("x-api-key", "k2"),)) == "k2"
    assert _credential(None) is None


def test_every_service_method_has_a_rule() -> None:
    methods = set(pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name)
    assert methods == set(_RULES)


def test_rules_read_the_model_from_the_request() -> None:
    infer = pb.ModelInferRequest(model_name="m", model_version="2")
    assert _RULES["ModelInfer"](infer) == Access(Api.INFERENCE, "m", "2")
    assert _RULES["ModelMetadata"](pb.ModelMetadataRequest(name="m")) == Access(Api.METADATA, "m")
    assert _RULES["ModelStatistics"](pb.ModelStatisticsRequest()) == Access(Api.METRICS)
    load = pb.RepositoryModelLoadRequest(model_name="m")
    assert _RULES["RepositoryModelLoad"](load) == Access(Api.REPOSITORY, "m")
    assert _RULES["ServerLive"](pb.ServerLiveRequest()) == Access(Api.HEALTH)
