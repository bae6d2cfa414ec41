"""Concurrent requests of mixed sizes share executions, and each gets exactly its own answer."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

SLOW_MS = 40


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> RunningServer:
    root = tmp_path_factory.mktemp("slow-models")
    mf.write_model(
        root,
        "slow",
        lambda p: mf.slow(p, SLOW_MS),
        config="max_batch_size: 16\ndynamic_batching:\n  max_queue_delay_ms: 2\n",
    )
    running = start_server(root, tmp_path_factory.mktemp("slow-server"))
    yield running  # type: ignore[misc]
    assert running.stop() == 0, running.log()


def _call(server: RunningServer, index: int) -> tuple[int, np.ndarray, np.ndarray]:
    rows = 1 + index % 3
    data = np.random.default_rng(index).standard_normal((rows, 4)).astype(np.float32)
    if index % 2:
        client = httpclient.InferenceServerClient(server.http_url)
        tensor = httpclient.InferInput("INPUT0", [rows, 4], "FP32")
        tensor.set_data_from_numpy(data, binary_data=index % 4 == 1)
    else:
        client = grpcclient.InferenceServerClient(server.grpc_url)  # type: ignore[assignment]
        tensor = grpcclient.InferInput("INPUT0", [rows, 4], "FP32")  # type: ignore[assignment]
        tensor.set_data_from_numpy(data)
    return index, data, client.infer("slow", [tensor]).as_numpy("OUTPUT0")


def test_concurrent_mixed_requests_are_batched_and_answered_correctly(slow_server: RunningServer) -> None:
    requests = 96
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda i: _call(slow_server, i), range(requests)))
    for _, data, output in results:
        np.testing.assert_allclose(output, data + 1, rtol=1e-6)
    stats = httpclient.InferenceServerClient(slow_server.http_url).get_inference_statistics("slow")
    model = stats["model_stats"][0]
    rows = sum(1 + i % 3 for i in range(requests))
    assert model["inference_count"] == rows
    assert model["inference_stats"]["success"]["count"] == requests
    # Requests arriving while a 40 ms execution runs queue up and run together.
    assert model["execution_count"] < requests
    assert max(b["batch_size"] for b in model["batch_stats"]) > 3
    assert all(b["batch_size"] <= 16 for b in model["batch_stats"])


def test_bad_requests_among_good_ones_fail_alone(server: RunningServer) -> None:
    def call(index: int) -> tuple[int, object]:
        client = httpclient.InferenceServerClient(server.http_url)
        value = 100 if index % 7 == 3 else index % 10
        rows = 2 if index % 11 == 5 else 1
        tensor = httpclient.InferInput("INDEX", [1, rows], "INT64")  # wrong shape when rows == 2
        tensor.set_data_from_numpy(np.full((1, rows), value, np.int64))
        try:
            return index, client.infer("gather", [tensor]).as_numpy("OUTPUT0")
        except InferenceServerException as exc:
            return index, exc

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(call, range(120)))
    for index, result in results:
        if index % 11 == 5:
            assert isinstance(result, InferenceServerException) and "expects shape" in str(result)
        elif index % 7 == 3:
            assert isinstance(result, InferenceServerException) and "failed to execute" in str(result)
        else:
            assert not isinstance(result, Exception), result
            np.testing.assert_array_equal(result, [[1.5 * (index % 10)]])
