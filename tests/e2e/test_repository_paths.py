"""Model names are names, not paths (Triton's CVE-2023-31036 class): every route refuses traversal,
answers the same whatever exists outside the repository, and never shows the server's absolute paths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import modelfactory as mf
import pytest
from httputil import post_json, request
from onnx import TensorProto
from serverctl import RunningServer, start_server

from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc
from inferd.security.keys import hash_key, new_key

FRAUD_KEY = new_key()
INFER = {"inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}


def _identity(root: Path, name: str) -> None:
    mf.write_model(root, name, lambda p: mf.identity(p, TensorProto.FLOAT))


@pytest.fixture(scope="module")
def layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``base/`` looks like a model itself (so ``..`` from the repository would load it), ``outside/`` is
    a model beside the repository, and ``models/evil`` is a symlink to it."""
    base = tmp_path_factory.mktemp("confinement")
    mf.identity(base / "1" / "model.onnx", TensorProto.FLOAT)
    _identity(base, "outside")
    root = base / "models"
    for name in ("a", "fraud-a", "secret"):
        _identity(root, name)
    mf.write_model(root, "broken", mf.corrupt)
    mf.write_model(root, "badconfig", lambda p: mf.identity(p, TensorProto.FLOAT), config="bogus_key: 1\n")
    (root / "evil").symlink_to(base / "outside", target_is_directory=True)
    (root / "dangling").symlink_to(base / "nowhere", target_is_directory=True)
    return base


@pytest.fixture(scope="module")
def server(layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        layout / "models",
        tmp_path_factory.mktemp("server"),
        "--model-control",
        "explicit",
        "--load-model",
        "a",
    )
    yield running
    assert running.stop() == 0, running.log()


def _stub(server: RunningServer) -> tuple[grpc.Channel, pb_grpc.GRPCInferenceServiceStub]:
    channel = grpc.insecure_channel(server.grpc_url)
    return channel, pb_grpc.GRPCInferenceServiceStub(channel)


def _grpc_error(call: Any, request: Any, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=30, metadata=metadata)
    return raised.value


def _names(server: RunningServer) -> set[str]:
    status, rows = post_json(server.http_url, "/v2/repository/index", {})
    assert status == 200, rows
    return {row["name"] for row in rows}


def _ready(server: RunningServer) -> set[str]:
    status, rows = post_json(server.http_url, "/v2/repository/index", {"ready": True})
    assert status == 200, rows
    return {row["name"] for row in rows}


@pytest.mark.parametrize(
    "path",
    [
        "/v2/repository/models/../load",
        "/v2/repository/models/%2e%2e/load",
        "/v2/repository/models/%2E%2E/load",
        "/v2/repository/models/./load",
        "/v2/repository/models/.hidden/load",
        "/v2/repository/models/" + "m" * 300 + "/load",
        "/v2/repository/models/a%20b/load",
        "/v2/repository/models/..%2F..%2Fetc/unload",
    ],
)
def test_rest_load_refuses_names_that_are_not_one_segment(server: RunningServer, path: str) -> None:
    status, _, body = request(server.http_url, "POST", path, b"{}")
    assert status in (400, 404), (status, body)
    if "%2F" not in path:  # an encoded slash splits the path: no route has that many segments
        assert status == 400 and "model name" in json.loads(body)["error"]
    assert _ready(server) == {"a"}


def test_rest_encoded_slashes_reach_no_model(server: RunningServer) -> None:
    for path in (
        "/v2/repository/models/fraud-a%2F..%2Fsecret/load",
        "/v2/repository/models/a%2f..%2f..%2f/load",
    ):
        status, _, _ = request(server.http_url, "POST", path, b"{}")
        assert status in (400, 404)
    assert _ready(server) == {"a"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/models/../infer"),
        ("POST", "/v2/models/%2e%2e/infer"),
        ("GET", "/v2/models/.."),
        ("GET", "/v2/models/../ready"),
        ("GET", "/v2/models/../config"),
        ("GET", "/v2/models/../stats"),
        ("GET", "/v2/models/" + "m" * 300),
        ("POST", "/v2/models/" + "m" * 300 + "/infer"),
        ("GET", "/v2/models/a/versions/x1/ready"),
        ("POST", "/v2/models/a/versions/1e3/infer"),
        ("GET", "/v2/repository/models/../lifecycle"),
        ("POST", "/v2/repository/models/../rollback"),
    ],
)
def test_every_rest_route_validates_the_name(server: RunningServer, method: str, path: str) -> None:
    body = json.dumps(INFER).encode() if method == "POST" else None
    status, _, raw = request(server.http_url, method, path, body)
    assert status == 400, (status, raw)
    assert "model name" in json.loads(raw)["error"] or "version" in json.loads(raw)["error"]


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/../secret", "../outside", "/abs", "a\\b", "a\x00b", "é", "m" * 129, "-a"],
)
def test_grpc_load_refuses_bad_names(server: RunningServer, layout: Path, name: str) -> None:
    channel, stub = _stub(server)
    with channel:
        error = _grpc_error(stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name=name))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
        error = _grpc_error(stub.RepositoryModelUnload, pb.RepositoryModelUnloadRequest(model_name=name))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    absolute = str(layout / "outside")
    channel, stub = _stub(server)
    with channel:
        error = _grpc_error(stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name=absolute))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert str(layout) not in (error.details() or "")
    assert _ready(server) == {"a"}


def test_grpc_model_routes_validate_names_and_versions(server: RunningServer) -> None:
    channel, stub = _stub(server)
    bad = "a/../secret"
    with channel:
        for call, message in (
            (stub.ModelReady, pb.ModelReadyRequest(name=bad)),
            (stub.ModelMetadata, pb.ModelMetadataRequest(name=bad)),
            (stub.ModelConfig, pb.ModelConfigRequest(name=bad)),
            (stub.ModelStatistics, pb.ModelStatisticsRequest(name=bad)),
            (stub.ModelInfer, pb.ModelInferRequest(model_name=bad)),
            (stub.ModelReady, pb.ModelReadyRequest(name="a", version="../1")),
            (stub.ModelMetadata, pb.ModelMetadataRequest(name="a", version="one")),
            (stub.ModelInfer, pb.ModelInferRequest(model_name="a", model_version="-1")),
        ):
            error = _grpc_error(call, message)
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (message, error.details())
        # An empty name in statistics still means every model.
        assert stub.ModelStatistics(pb.ModelStatisticsRequest(), timeout=30).model_stats


def test_no_existence_oracle_outside_the_repository(server: RunningServer, layout: Path) -> None:
    channel, stub = _stub(server)
    answers = []
    with channel:
        for name in ("/etc", "/nonexistent", str(layout / "outside"), str(layout / "nowhere")):
            error = _grpc_error(stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name=name))
            answers.append((error.code(), error.details()))
    assert len(set(answers)) == 1, answers
    # A symlink that leaves the repository reads exactly like a model that is not there.
    rest = []
    for name in ("evil", "dangling", "missing"):
        status, body = post_json(server.http_url, f"/v2/repository/models/{name}/load", {})
        rest.append((status, body["error"].replace(name, "NAME")))
    assert len(set(rest)) == 1 and rest[0][0] == 404, rest
    assert not {"evil", "dangling"} & _names(server)
    assert _ready(server) == {"a"}


def test_errors_show_paths_relative_to_the_repository(server: RunningServer, layout: Path) -> None:
    for name, shown in (("broken", "broken/1/model.onnx"), ("badconfig", "badconfig/config.yaml")):
        status, body = post_json(server.http_url, f"/v2/repository/models/{name}/load", {})
        assert status >= 400 and shown in body["error"], body
        assert str(layout) not in body["error"], body
    status, rows = post_json(server.http_url, "/v2/repository/index", {})
    reasons = " ".join(row.get("reason", "") for row in rows)
    assert "broken/1/model.onnx" in reasons and str(layout) not in reasons
    status, _, raw = request(server.http_url, "GET", "/v2/repository/models/broken/lifecycle")
    assert status == 200 and str(layout) not in raw.decode()
    status, _, raw = request(server.http_url, "POST", "/v2/repository/models/missing/load", b"{}")
    assert status == 404 and str(layout) not in raw.decode()


@pytest.fixture(scope="module")
def scoped(layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp("scoped")
    keys = workdir / "keys.yaml"
    keys.write_text(
        "keys:\n"
        f"  - id: fraud\n    hash: {hash_key(FRAUD_KEY)}\n    models: ['fraud-*']\n"
        "    apis: [inference, repository, metadata, health]\n"
    )
    running = start_server(layout / "models", workdir, "--model-control", "explicit", "--api-keys", str(keys))
    yield running
    assert running.stop() == 0, running.log()


def test_a_scoped_key_cannot_reach_past_its_models(scoped: RunningServer) -> None:
    metadata = (("authorization", f"Bearer {FRAUD_KEY}"),)
    channel, stub = _stub(scoped)
    with channel:
        for name in ("fraud-a/../secret", "fraud-a/../../outside", "fraud-../secret"):
            error = _grpc_error(
                stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name=name), metadata
            )
            assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
            error = _grpc_error(stub.ModelInfer, pb.ModelInferRequest(model_name=name), metadata)
            assert error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
        error = _grpc_error(
            stub.RepositoryModelLoad, pb.RepositoryModelLoadRequest(model_name="secret"), metadata
        )
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        # Its own models it can still load and use.
        stub.RepositoryModelLoad(
            pb.RepositoryModelLoadRequest(model_name="fraud-a"), timeout=60, metadata=metadata
        )
        assert stub.ModelReady(pb.ModelReadyRequest(name="fraud-a"), timeout=30, metadata=metadata).ready
    headers = {"Authorization": f"Bearer {FRAUD_KEY}"}
    for path in ("/v2/repository/models/fraud-a%2F..%2Fsecret/load", "/v2/repository/models/../load"):
        status, _, _ = request(scoped.http_url, "POST", path, b"{}", headers)
        assert status in (400, 403, 404)
    status, _, raw = request(scoped.http_url, "POST", "/v2/repository/index", b"{}", headers)
    rows = json.loads(raw)
    assert {row["name"] for row in rows if row["state"] == "READY"} == {"fraud-a"}, rows
