"""Response cache end to end: hits skip the model, keys tell requests apart, Redis is shared and optional."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest
import redis
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from onnx import TensorProto
from redisctl import RunningRedis, start_redis
from serverctl import RunningServer, start_server

CACHED = "max_batch_size: 8\nresponse_cache: true\n"


@pytest.fixture(scope="module")
def cache_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cache-models")
    mf.write_model(root, "cached", mf.add_sub, config=CACHED)
    mf.write_model(root, "uncached", mf.add_sub, config="max_batch_size: 8\n")
    mf.write_model(
        root,
        "cached_bytes",
        lambda p: mf.identity(p, TensorProto.STRING),
        config=CACHED,
    )
    return root


@pytest.fixture(scope="module")
def memory_server(
    cache_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(cache_repository, tmp_path_factory.mktemp("cache-server"))
    yield running
    assert running.stop() == 0, running.log()


def _inputs(a: np.ndarray, b: np.ndarray) -> list[httpclient.InferInput]:
    tensors = []
    for name, data in (("INPUT0", a), ("INPUT1", b)):
        tensor = httpclient.InferInput(name, list(data.shape), "INT32")
        tensor.set_data_from_numpy(data, binary_data=False)
        tensors.append(tensor)
    return tensors


def _stats(server: RunningServer, model: str) -> dict[str, object]:
    client = httpclient.InferenceServerClient(server.http_url)
    return client.get_inference_statistics(model)["model_stats"][0]  # type: ignore[no-any-return]


def _counts(stats: dict[str, object]) -> tuple[int, int, int, int]:
    inference = stats["inference_stats"]
    return (
        inference["cache_hit"]["count"],  # type: ignore[index]
        inference["cache_miss"]["count"],  # type: ignore[index]
        stats["execution_count"],  # type: ignore[return-value]
        inference["success"]["count"],  # type: ignore[index]
    )


def _add_sub(server: RunningServer, model: str, seed: int, request_id: str = "") -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.integers(-100, 100, (2, 16), dtype=np.int32)
    b = rng.integers(-100, 100, (2, 16), dtype=np.int32)
    result = httpclient.InferenceServerClient(server.http_url).infer(
        model, _inputs(a, b), request_id=request_id
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    return result.as_numpy("OUTPUT0")  # type: ignore[no-any-return]


def test_a_repeated_request_is_answered_from_the_cache_without_running_the_model(
    memory_server: RunningServer,
) -> None:
    before = _counts(_stats(memory_server, "cached"))
    _add_sub(memory_server, "cached", seed=1, request_id="first")
    _add_sub(memory_server, "cached", seed=1, request_id="second")  # a new id still hits
    hits, misses, executions, successes = _counts(_stats(memory_server, "cached"))
    assert (hits, misses, executions, successes) == (
        before[0] + 1,
        before[1] + 1,
        before[2] + 1,
        before[3] + 2,
    )


def test_different_inputs_and_output_selections_miss(memory_server: RunningServer) -> None:
    before = _counts(_stats(memory_server, "cached"))
    _add_sub(memory_server, "cached", seed=2)
    _add_sub(memory_server, "cached", seed=3)
    a = np.ones((1, 16), dtype=np.int32)
    client = httpclient.InferenceServerClient(memory_server.http_url)
    only_first = [httpclient.InferRequestedOutput("OUTPUT0")]
    only_second = [httpclient.InferRequestedOutput("OUTPUT1")]
    first = client.infer("cached", _inputs(a, a), outputs=only_first)
    second = client.infer("cached", _inputs(a, a), outputs=only_second)
    assert first.as_numpy("OUTPUT1") is None and second.as_numpy("OUTPUT0") is None
    np.testing.assert_array_equal(second.as_numpy("OUTPUT1"), a - a)
    hits, misses, _, _ = _counts(_stats(memory_server, "cached"))
    assert (hits - before[0], misses - before[1]) == (0, 4)


def test_grpc_and_http_share_entries_and_binary_outputs_come_from_the_cache(
    memory_server: RunningServer,
) -> None:
    _add_sub(memory_server, "cached", seed=4)
    rng = np.random.default_rng(4)
    a = rng.integers(-100, 100, (2, 16), dtype=np.int32)
    b = rng.integers(-100, 100, (2, 16), dtype=np.int32)
    before = _counts(_stats(memory_server, "cached"))
    tensors = []
    for name, data in (("INPUT0", a), ("INPUT1", b)):
        tensor = grpcclient.InferInput(name, list(data.shape), "INT32")
        tensor.set_data_from_numpy(data)
        tensors.append(tensor)
    result = grpcclient.InferenceServerClient(memory_server.grpc_url).infer("cached", tensors)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
    assert _counts(_stats(memory_server, "cached"))[0] == before[0] + 1


def test_bytes_tensors_are_cached_exactly(memory_server: RunningServer) -> None:
    data = np.array([[b"a", b"", "\u00e9t\u00e9".encode(), b"\x00z"]], dtype=object)
    client = grpcclient.InferenceServerClient(memory_server.grpc_url)
    for _ in range(2):
        tensor = grpcclient.InferInput("INPUT0", [1, 4], "BYTES")
        tensor.set_data_from_numpy(data)
        output = client.infer("cached_bytes", [tensor]).as_numpy("OUTPUT0")
        assert output.tolist() == data.tolist()
    hits, misses, executions, _ = _counts(_stats(memory_server, "cached_bytes"))
    assert (hits, misses, executions) == (1, 1, 1)


def test_models_without_response_cache_never_touch_it(memory_server: RunningServer) -> None:
    for _ in range(2):
        _add_sub(memory_server, "uncached", seed=5)
    hits, misses, executions, _ = _counts(_stats(memory_server, "uncached"))
    assert (hits, misses, executions) == (0, 0, 2)


def test_cache_off_runs_every_request(cache_repository: Path, tmp_path: Path) -> None:
    server = start_server(cache_repository, tmp_path, "--cache", "off")
    try:
        for _ in range(2):
            _add_sub(server, "cached", seed=11)
        assert _counts(_stats(server, "cached"))[:3] == (0, 0, 2)
    finally:
        assert server.stop() == 0, server.log()


def test_replicas_share_a_redis_cache(
    cache_repository: Path, redis_server: RunningRedis, tmp_path: Path
) -> None:
    prefix = f"replicas-{tmp_path.name}:"
    flags = ("--cache", redis_server.url, "--cache-key-prefix", prefix)
    first = start_server(cache_repository, tmp_path, *flags)
    second = start_server(cache_repository, tmp_path, *flags)
    # Another deployment on the same Redis, under its own prefix: it shares nothing.
    other = start_server(
        cache_repository, tmp_path, "--cache", redis_server.url, "--cache-key-prefix", "other:"
    )
    try:
        _add_sub(first, "cached", seed=6)
        _add_sub(second, "cached", seed=6)
        _add_sub(other, "cached", seed=6)
        assert _counts(_stats(first, "cached"))[:3] == (0, 1, 1)
        assert _counts(_stats(second, "cached"))[:3] == (1, 0, 0)
        assert _counts(_stats(other, "cached"))[:3] == (0, 1, 1)
        client = redis.Redis.from_url(redis_server.url)
        try:
            assert len(client.keys(f"{prefix}*")) == 1
            assert all(ttl > 0 for ttl in (client.ttl(k) for k in client.keys(f"{prefix}*")))
        finally:
            client.close()
    finally:
        for server in (first, second, other):
            assert server.stop() == 0, server.log()


def test_requests_keep_succeeding_while_redis_is_down_and_the_cache_returns_after(
    cache_repository: Path, tmp_path: Path
) -> None:
    redis = start_redis(tmp_path / "redis")
    server = start_server(cache_repository, tmp_path, "--cache", redis.url)
    try:
        _add_sub(server, "cached", seed=7)
        _add_sub(server, "cached", seed=7)
        redis.stop()
        for seed in (7, 8, 8, 9):  # every one answered by the model, correctly
            _add_sub(server, "cached", seed=seed)
        hits, misses, executions, successes = _counts(_stats(server, "cached"))
        assert (hits, misses, successes) == (1, 1, 6)
        assert executions == 5
        assert "redis response cache unavailable" in server.log()
        restarted = start_redis(tmp_path / "redis", port=redis.port)
        try:
            _wait_for_cache_hit(server, seed=10)
        finally:
            restarted.stop()
    finally:
        redis.stop()
        assert server.stop() == 0, server.log()


def _wait_for_cache_hit(server: RunningServer, seed: int) -> None:
    """The breaker retries Redis after a pause; poll (bounded) until a repeated request hits."""
    import time

    deadline = time.monotonic() + 30
    before = _counts(_stats(server, "cached"))[0]
    while time.monotonic() < deadline:
        _add_sub(server, "cached", seed=seed)
        if _counts(_stats(server, "cached"))[0] > before:
            return
        time.sleep(0.2)
    raise AssertionError("the cache never came back after Redis restarted:\n" + server.log())
