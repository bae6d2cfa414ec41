"""Rate limits shared by replicas through a real redis-server, and Redis going away (fail open/closed)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest
import redis
import tritonclient.grpc as grpcclient
from httputil import request
from onnx import TensorProto
from redisctl import RunningRedis, start_redis
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

BODY = json.dumps(
    {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}
).encode()
INFER = "/v2/models/identity/infer"


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("models")
    mf.write_model(
        root, "identity", lambda p: mf.identity(p, TensorProto.FLOAT), config="max_batch_size: 4\n"
    )
    return root


def _infer_status(server: RunningServer) -> tuple[int, dict[str, str]]:
    status, headers, _ = request(server.http_url, "POST", INFER, BODY)
    return status, headers


@pytest.fixture
def replicas(repository: Path, redis_server: RunningRedis, tmp_path: Path) -> Iterator[list[RunningServer]]:
    url = f"redis://127.0.0.1:{redis_server.port}/3"  # a database of its own, emptied first
    redis.Redis.from_url(url).flushdb()
    flags = ("--rate-limit", "0.001", "--rate-burst", "3", "--rate-limit-redis", url)
    servers = [start_server(repository, tmp_path, *flags) for _ in range(2)]
    yield servers
    for server in servers:
        assert server.stop() == 0, server.log()


def test_replicas_share_one_bucket_per_client_address(replicas: list[RunningServer]) -> None:
    first, second = replicas
    statuses = [_infer_status(server)[0] for server in (first, second, first)]
    assert statuses == [200, 200, 200]  # the burst of 3, spent across both replicas
    status, headers = _infer_status(second)
    assert status == 429 and int(headers["retry-after"]) >= 1
    client = grpcclient.InferenceServerClient(first.grpc_url)
    tensor = grpcclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
    with pytest.raises(InferenceServerException) as limited:
        client.infer("identity", [tensor])
    assert str(limited.value.status()) == "StatusCode.RESOURCE_EXHAUSTED"
    # Only inference is limited.
    assert request(first.http_url, "GET", "/v2/models/identity")[0] == 200


def test_redis_down_fail_closed_answers_503_fail_open_serves(repository: Path, tmp_path: Path) -> None:
    own_redis = start_redis(tmp_path)
    servers: list[RunningServer] = []
    try:
        for failure in ("closed", "open"):
            servers.append(
                start_server(
                    repository,
                    tmp_path,
                    "--rate-limit",
                    "1000",
                    "--rate-limit-redis",
                    own_redis.url,
                    "--rate-limit-redis-failure",
                    failure,
                )
            )
        closed, fail_open = servers
        assert _infer_status(closed)[0] == 200 and _infer_status(fail_open)[0] == 200
        own_redis.stop()
        status, _, body = request(closed.http_url, "POST", INFER, BODY)
        assert status == 503 and "rate limiter unavailable" in json.loads(body)["error"]
        assert _infer_status(fail_open)[0] == 200
        metrics = request(fail_open.http_url, "GET", "/metrics")[2].decode()
        errors = next(
            line for line in metrics.splitlines() if line.startswith("inferd_rate_limit_redis_errors")
        )
        assert float(errors.rsplit(" ", 1)[1]) >= 1
        for server in servers:
            assert server.stop() == 0
            assert "rate-limit Redis unreachable" in server.log()
    finally:
        own_redis.stop()
        for server in servers:
            server.stop()
