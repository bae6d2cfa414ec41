"""API keys end to end: the same 401/403/429 answers over REST and gRPC, audit lines, key reloads."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from httputil import request
from onnx import TensorProto
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

from inferd.security.keys import hash_key, new_key

ADMIN, ALICE, LIMITED, QUOTA, STREAMER = new_key(), new_key(), new_key(), new_key(), new_key()
ALL_KEYS = (ADMIN, ALICE, LIMITED, QUOTA, STREAMER)
BATCHING = "max_batch_size: 8\n"


def _key_file(path: Path) -> None:
    path.write_text(
        "keys:\n"
        f"  - id: admin\n    hash: {hash_key(ADMIN)}\n    apis: ['*']\n"
        f"  - id: alice\n    hash: {hash_key(ALICE)}\n    models: [simple, 'identity_*']\n"
        "    apis: [inference, metadata]\n"
        f"  - id: limited\n    hash: {hash_key(LIMITED)}\n    apis: [inference]\n"
        "    rate: 0.001\n    burst: 2\n"
        f"  - id: quota\n    hash: {hash_key(QUOTA)}\n    apis: [inference]\n    daily_quota: 2\n"
        f"  - id: streamer\n    hash: {hash_key(STREAMER)}\n    rate: 0.001\n    burst: 2\n"
    )


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    mf.write_model(root, "simple", mf.add_sub, config=BATCHING)
    mf.write_model(root, "identity_fp32", lambda p: mf.identity(p, TensorProto.FLOAT), config=BATCHING)
    mf.write_model(root, "private", lambda p: mf.identity(p, TensorProto.FLOAT), config=BATCHING)
    return root


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("secured")


@pytest.fixture(scope="module")
def secured(repository: Path, workdir: Path) -> Iterator[RunningServer]:
    keys = workdir / "keys.yaml"
    _key_file(keys)
    running = start_server(
        repository, workdir, "--api-keys", str(keys), "--audit-log", str(workdir / "audit.jsonl")
    )
    yield running
    assert running.stop() == 0, running.log()


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _simple_inputs(module: Any) -> tuple[list[Any], np.ndarray]:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = module.InferInput(name, [1, 16], "INT32")
        tensor.set_data_from_numpy(a)
        inputs.append(tensor)
    return inputs, a


def _identity_inputs(module: Any) -> list[Any]:
    tensor = module.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    return [tensor]


def _grpc_status(excinfo: pytest.ExceptionInfo[InferenceServerException]) -> str:
    return str(excinfo.value.status())


def test_rest_without_a_valid_key_is_401_with_www_authenticate(secured: RunningServer) -> None:
    for path in ("/v2/health/ready", "/v2", "/v2/models/simple", "/v2/nothing/here"):
        status, headers, body = request(secured.http_url, "GET", path)
        assert status == 401, path
        assert headers["www-authenticate"] == 'Bearer realm="inferd"'
        assert "API key" in json.loads(body)["error"]
    status, headers, _ = request(secured.http_url, "GET", "/v2", headers=_bearer("wrong"))
    assert status == 401 and "www-authenticate" in headers
    status, _, _ = request(secured.http_url, "GET", "/v2", headers={"Authorization": f"Basic {ADMIN}"})
    assert status == 401


def test_rest_a_known_key_is_served_within_its_scope(secured: RunningServer) -> None:
    client = httpclient.InferenceServerClient(secured.http_url)
    inputs, a = _simple_inputs(httpclient)
    result = client.infer("simple", inputs, headers=_bearer(ALICE))
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)
    result = client.infer("identity_fp32", _identity_inputs(httpclient), headers={"X-API-Key": ALICE})
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), np.ones((1, 4), dtype=np.float32))
    assert client.get_model_metadata("simple", headers=_bearer(ALICE))["name"] == "simple"
    assert client.get_model_repository_index(headers=_bearer(ADMIN))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/models/private/infer"),  # model outside its scope
        ("GET", "/v2/models/private"),
        ("GET", "/v2/health/ready"),  # APIs it was not given
        ("POST", "/v2/repository/index"),
        ("GET", "/v2/models/simple/stats"),
    ],
)
def test_rest_a_known_key_outside_its_scope_is_403(secured: RunningServer, method: str, path: str) -> None:
    status, headers, body = request(secured.http_url, method, path, b"{}", _bearer(ALICE))
    assert status == 403
    assert "www-authenticate" not in headers
    assert "alice" in json.loads(body)["error"]


def test_metrics_need_a_key_with_the_metrics_api_and_count_refusals(secured: RunningServer) -> None:
    request(secured.http_url, "GET", "/v2")  # one more 401 to count
    assert request(secured.http_url, "GET", "/metrics")[0] == 401
    assert request(secured.http_url, "GET", "/metrics", headers=_bearer(ALICE))[0] == 403
    status, _, body = request(secured.http_url, "GET", "/metrics", headers=_bearer(ADMIN))
    assert status == 200
    counted = [
        line for line in body.decode().splitlines() if line.startswith("inferd_security_refusals_total")
    ]
    unauthenticated = next(line for line in counted if 'reason="unauthenticated"' in line)
    assert float(unauthenticated.rsplit(" ", 1)[1]) >= 2


def test_a_missing_model_is_still_404_for_a_key_allowed_all_models(secured: RunningServer) -> None:
    status, _, _ = request(secured.http_url, "GET", "/v2/models/nope", headers=_bearer(ADMIN))
    assert status == 404


def test_grpc_answers_like_rest(secured: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(secured.grpc_url)
    inputs, a = _simple_inputs(grpcclient)
    result = client.infer("simple", inputs, headers={"authorization": f"Bearer {ALICE}"})
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)
    assert client.get_model_metadata("simple", headers={"x-api-key": ALICE}).name == "simple"
    assert client.is_server_ready(headers={"x-api-key": ADMIN})

    with pytest.raises(InferenceServerException) as missing:
        client.infer("simple", inputs)
    assert _grpc_status(missing) == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as unknown:
        client.get_server_metadata(headers={"x-api-key": "wrong"})
    assert _grpc_status(unknown) == "StatusCode.UNAUTHENTICATED"
    with pytest.raises(InferenceServerException) as scope:
        client.infer("private", _identity_inputs(grpcclient), headers={"x-api-key": ALICE})
    assert _grpc_status(scope) == "StatusCode.PERMISSION_DENIED"
    with pytest.raises(InferenceServerException) as api:
        client.get_model_repository_index(headers={"x-api-key": ALICE})
    assert _grpc_status(api) == "StatusCode.PERMISSION_DENIED"


def _stream(server: RunningServer, headers: dict[str, str], models: list[str]) -> list[Any]:
    """Send one message per model, close the stream, and return what came back, in order."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    results: list[Any] = []
    client.start_stream(callback=lambda result, error: results.append(error or result), headers=headers)
    try:
        for model in models:
            client.async_stream_infer(model, _identity_inputs(grpcclient))
    except InferenceServerException:
        pass  # the server already ended the stream; its status is among the results
    finally:
        client.stop_stream()  # waits for the answers in flight
    return results


def test_grpc_stream_checks_the_key_and_each_message(secured: RunningServer) -> None:
    ok = _stream(secured, {"x-api-key": ALICE}, ["identity_fp32", "identity_fp32"])
    assert [r.as_numpy("OUTPUT0").tolist() for r in ok] == [[[1.0] * 4]] * 2
    assert len(ok) == 2
    denied = _stream(secured, {}, ["identity_fp32"])
    assert isinstance(denied[0], InferenceServerException)
    assert "UNAUTHENTICATED" in str(denied[0].status())
    scoped = _stream(secured, {"x-api-key": ALICE}, ["identity_fp32", "private", "identity_fp32"])
    assert scoped[0].as_numpy("OUTPUT0").shape == (1, 4)
    assert len(scoped) == 2 and "PERMISSION_DENIED" in str(scoped[1].status())


def test_grpc_stream_messages_are_rate_limited(secured: RunningServer) -> None:
    outcomes = _stream(secured, {"x-api-key": STREAMER}, ["identity_fp32"] * 4)
    assert [r.as_numpy("OUTPUT0").shape for r in outcomes[:2]] == [(1, 4), (1, 4)]
    assert len(outcomes) == 3 and "RESOURCE_EXHAUSTED" in str(outcomes[2].status())


def test_per_key_rate_limit_is_shared_by_rest_and_grpc(secured: RunningServer) -> None:
    client = httpclient.InferenceServerClient(secured.http_url)
    for _ in range(2):  # the key's burst
        client.infer("identity_fp32", _identity_inputs(httpclient), headers=_bearer(LIMITED))
    body = json.dumps(
        {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
    ).encode()
    status, headers, answer = request(
        secured.http_url, "POST", "/v2/models/identity_fp32/infer", body, _bearer(LIMITED)
    )
    assert status == 429
    assert int(headers["retry-after"]) >= 1
    assert "rate limit" in json.loads(answer)["error"]
    grpc = grpcclient.InferenceServerClient(secured.grpc_url)
    with pytest.raises(InferenceServerException) as limited:
        grpc.infer("identity_fp32", _identity_inputs(grpcclient), headers={"x-api-key": LIMITED})
    assert _grpc_status(limited) == "StatusCode.RESOURCE_EXHAUSTED"
    # Buckets are per model.
    client.infer("simple", _simple_inputs(httpclient)[0], headers=_bearer(LIMITED))


def test_daily_quota_answers_429_until_utc_midnight(secured: RunningServer) -> None:
    client = httpclient.InferenceServerClient(secured.http_url)
    for model in ("identity_fp32", "simple"):  # the quota spans models
        inputs = _identity_inputs(httpclient) if model == "identity_fp32" else _simple_inputs(httpclient)[0]
        client.infer(model, inputs, headers=_bearer(QUOTA))
    status, headers, body = request(
        secured.http_url, "POST", "/v2/models/identity_fp32/infer", b"{}", _bearer(QUOTA)
    )
    assert status == 429 and "quota" in json.loads(body)["error"]
    assert 1 <= int(headers["retry-after"]) <= 86400


def _audit_lines(path: Path, wanted: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 30
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        if len(lines) >= wanted:
            return lines
        time.sleep(0.05)
    raise AssertionError(f"audit log has {len(lines)} lines, expected at least {wanted}")


def test_audit_log_and_server_log_hold_no_key_material(secured: RunningServer, workdir: Path) -> None:
    grpc = grpcclient.InferenceServerClient(secured.grpc_url)
    with pytest.raises(InferenceServerException):  # refused by the servicer, not by the gate
        grpc.get_model_metadata("missing_model", headers={"x-api-key": ADMIN})
    marker = "/v2/models/private/versions/7"  # the last request: its line comes last
    request(secured.http_url, "GET", marker, headers=_bearer(ALICE))
    lines = _audit_lines(workdir / "audit.jsonl", 1)
    while not any(line["call"] == f"GET {marker}" for line in lines):
        lines = _audit_lines(workdir / "audit.jsonl", len(lines) + 1)
    line = next(line for line in lines if line["call"] == f"GET {marker}")
    assert line["key_id"] == "alice" and line["status"] == 403 and line["protocol"] == "http"
    assert line["model"] == "private" and line["version"] == "7" and line["api"] == "metadata"
    assert line["client"] == "127.0.0.1"
    grpc_lines = [line for line in lines if line["protocol"] == "grpc"]
    assert {"OK", "UNAUTHENTICATED", "PERMISSION_DENIED"} <= {line["status"] for line in grpc_lines}
    missing = next(line for line in grpc_lines if line["model"] == "missing_model")
    assert missing["status"] == "NOT_FOUND" and missing["key_id"] == "admin"
    assert missing["call"] == "/inference.GRPCInferenceService/ModelMetadata"
    audit_text = (workdir / "audit.jsonl").read_text()
    for key in ALL_KEYS:
        for text in (audit_text, secured.log()):
            assert key not in text and hash_key(key) not in text


def test_a_key_added_to_the_file_works_without_a_restart(secured: RunningServer, workdir: Path) -> None:
    added = subprocess.run(
        [sys.executable, "-m", "inferd", "keys", "add", str(workdir / "keys.yaml"), "--id", "carol"],
        capture_output=True,
        text=True,
        check=True,
    )
    carol = added.stdout.strip()
    deadline = time.monotonic() + 30
    status = 0
    while time.monotonic() < deadline:
        status, _, _ = request(secured.http_url, "GET", "/v2/models/simple", headers=_bearer(carol))
        if status == 200:
            break
        assert status == 401
        time.sleep(0.1)
    assert status == 200
    assert carol not in secured.log()


@pytest.fixture
def sighup_server(
    repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RunningServer, Path]]:
    keys = tmp_path / "keys.yaml"
    _key_file(keys)
    # The file watch would reload too; a long interval leaves SIGHUP as the only trigger.
    monkeypatch.setenv("INFERD_SECURITY__KEYS_RELOAD_INTERVAL_S", "3600")
    running = start_server(repository, tmp_path, "--api-keys", str(keys), "--open-health")
    yield running, keys
    assert running.stop() == 0, running.log()


def test_open_health_and_sighup_revocation(sighup_server: tuple[RunningServer, Path]) -> None:
    server, keys = sighup_server
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    assert http.is_server_live() and http.is_server_ready() and http.is_model_ready("simple")
    assert grpc.is_server_ready()
    status, _, _ = request(server.http_url, "GET", "/v2/models/simple")
    assert status == 401  # only health is open

    assert request(server.http_url, "GET", "/v2", headers=_bearer(ALICE))[0] == 200
    keys.write_text(f"keys:\n  - id: admin\n    hash: {hash_key(ADMIN)}\n")
    server.process.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while request(server.http_url, "GET", "/v2", headers=_bearer(ALICE))[0] != 401:
        assert time.monotonic() < deadline, "alice's key was not revoked after SIGHUP"
        time.sleep(0.05)
    assert request(server.http_url, "GET", "/v2", headers=_bearer(ADMIN))[0] == 200


def test_a_bad_key_file_stops_start_up_with_its_name(repository: Path, tmp_path: Path) -> None:
    from serverctl import run_server_expecting_exit

    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n  - id: a\n    hash: plain-text-key\n")
    result = run_server_expecting_exit(repository, "--api-keys", str(keys))
    assert result.returncode == 1
    assert "keys.yaml" in result.stderr and "sha256" in result.stderr
    assert "plain-text-key" not in result.stderr
