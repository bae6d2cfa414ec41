"""How the REST front-end classifies a request for the security gate."""

from __future__ import annotations

import pytest

from inferd.http.access import classify, client_address, credential
from inferd.security.apis import Api
from inferd.security.gate import Access


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v2/models/m/infer", Access(Api.INFERENCE, "m")),
        ("POST", "/v2/models/m/versions/3/infer", Access(Api.INFERENCE, "m", "3")),
        ("GET", "/v2/models/m", Access(Api.METADATA, "m")),
        ("GET", "/v2/models/m/versions/2", Access(Api.METADATA, "m", "2")),
        ("GET", "/v2/models/m/config", Access(Api.METADATA, "m")),
        ("GET", "/v2/models/m/ready", Access(Api.HEALTH, "m")),
        ("GET", "/v2/models/m/stats", Access(Api.METRICS, "m")),
        ("GET", "/v2/models/stats", Access(Api.METRICS)),
        ("GET", "/v2", Access(Api.METADATA)),
        ("GET", "/v2/health/live", Access(Api.HEALTH)),
        ("GET", "/v2/health/ready", Access(Api.HEALTH)),
        ("POST", "/v2/repository/index", Access(Api.REPOSITORY)),
        ("POST", "/v2/repository/models/m/load", Access(Api.REPOSITORY, "m")),
        ("GET", "/metrics", Access(Api.METRICS)),
        ("GET", "/", Access(Api.METRICS)),  # the status page
        ("GET", "/dashboard/data", Access(Api.METRICS)),
        ("GET", "/v1/models/m", Access(Api.METADATA)),
        ("GET", "/v1/models", Access(Api.METADATA)),
        ("POST", "/v1/chat/completions", Access(Api.INFERENCE)),  # the model is in the body: openai.py
        ("POST", "/v2/models/m/generate_stream", Access(Api.INFERENCE, "m")),
        ("POST", "/v2/models/m/versions/2/generate", Access(Api.INFERENCE, "m", "2")),
        ("GET", "/v1", Access(None)),
        ("GET", "/v3/models", Access(None)),
        ("GET", "/v2/models/", Access(None)),
        ("GET", "/v2/models/m/explain", Access(None, "m")),
    ],
)
def test_classify_mirrors_the_routes(method: str, path: str, expected: Access) -> None:
    assert classify(method, path) == expected


def test_credential_and_client_address() -> None:
    assert credential([(b"authorization", b"Bearer k1"), (b"x-api-key", b"k2")]) == "k1"
    assert credential([(b"x-api-key", b"k2")]) == "k2"
    assert credential([(b"host", b"x")]) is None
    assert client_address({"client": ("10.0.0.7", 5000)}) == "10.0.0.7"
    assert client_address({"client": None}) == ""
