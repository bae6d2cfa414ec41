"""Triton's system shared memory extension with tritonclient's own POSIX regions, over REST and gRPC:
round trips in and out, hostile offsets and sizes, regions unlinked or truncated mid-use, and CUDA
shared memory answered as unsupported. API-key scope and shutdown: test_shared_memory_security.py."""

from __future__ import annotations

import contextlib
import os
import queue
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from httputil import post_json, request
from serverctl import RunningServer
from tritonclient.utils import InferenceServerException
from tritonshm import shared_memory

shm = shared_memory()

BYTES = 64  # one [1, 16] INT32 tensor


class Regions:
    """tritonclient regions made for one test, destroyed (and unregistered) after it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.handles: list[Any] = []
        self.keys: list[str] = []

    def make(self, name: str, size: int, register: bool = True) -> tuple[Any, str]:
        key = f"/inferd_test_{uuid.uuid4().hex[:10]}"
        handle = shm.create_shared_memory_region(name, key, size)
        self.handles.append(handle)
        self.keys.append(key)
        if register:
            self.client.register_system_shared_memory(name, key, size)
        return handle, key

    def close(self) -> None:
        self.client.unregister_system_shared_memory()
        for handle in self.handles:
            with contextlib.suppress(shm.SharedMemoryException):  # a test unlinked it itself
                shm.destroy_shared_memory_region(handle)


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, server: RunningServer) -> Iterator[Any]:
    if request.param == "http":
        yield httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    else:
        yield grpcclient.InferenceServerClient(server.grpc_url)


@pytest.fixture
def regions(client: Any) -> Iterator[Regions]:
    made = Regions(client)
    yield made
    made.close()


def _module(client: Any) -> Any:
    return httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient


def _shm_input(client: Any, name: str, region: str, size: int = BYTES, offset: int = 0) -> Any:
    tensor = _module(client).InferInput(name, [1, 16], "INT32")
    tensor.set_shared_memory(region, size, offset)
    return tensor


def _shm_output(client: Any, name: str, region: str, size: int = BYTES, offset: int = 0) -> Any:
    output = _module(client).InferRequestedOutput(name)
    output.set_shared_memory(region, size, offset)
    return output


def _status(client: Any) -> dict[str, dict[str, Any]]:
    status = client.get_system_shared_memory_status()
    if isinstance(status, list):  # REST: a list of regions
        return {
            r["name"]: {k: int(v) if k in ("offset", "byte_size") else v for k, v in r.items()}
            for r in status
        }
    return {
        name: {"name": r.name, "key": r.key, "offset": r.offset, "byte_size": r.byte_size}
        for name, r in status.regions.items()
    }


def test_round_trip_inputs_and_outputs_in_one_region_each(client: Any, regions: Regions) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    b = np.full((1, 16), 3, dtype=np.int32)
    inputs, _ = regions.make("in", 2 * BYTES)
    shm.set_shared_memory_region(inputs, [a, b])
    outputs, _ = regions.make("out", 2 * BYTES)
    result = client.infer(
        "simple",
        [_shm_input(client, "INPUT0", "in"), _shm_input(client, "INPUT1", "in", offset=BYTES)],
        outputs=[_shm_output(client, "OUTPUT0", "out"), _shm_output(client, "OUTPUT1", "out", offset=BYTES)],
    )
    total = shm.get_contents_as_numpy(outputs, np.int32, [1, 16])
    difference = shm.get_contents_as_numpy(outputs, np.int32, [1, 16], offset=BYTES)
    np.testing.assert_array_equal(total, a + b)
    np.testing.assert_array_equal(difference, a - b)
    # No data in the response: REST sends name, datatype and shape only (as Triton; its C++ client
    # would read "parameters" as binary data); gRPC names the region.
    entry = result.get_output("OUTPUT1")
    if isinstance(entry, dict):
        assert set(entry) == {"name", "datatype", "shape"} and entry["shape"] == [1, 16]
    else:
        assert entry.parameters["shared_memory_region"].string_param == "out"
    status = _status(client)
    assert status["in"]["byte_size"] == 2 * BYTES and status["out"]["key"] == regions.keys[1]


def test_shm_inputs_with_outputs_in_the_response(client: Any, regions: Regions) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    handle, _ = regions.make("in", 2 * BYTES)
    shm.set_shared_memory_region(handle, [a, a])
    result = client.infer(
        "simple",
        [_shm_input(client, "INPUT0", "in"), _shm_input(client, "INPUT1", "in", offset=BYTES)],
        outputs=[_module(client).InferRequestedOutput("OUTPUT0")],
    )
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + a)


def test_one_input_from_shm_one_in_the_body(client: Any, regions: Regions) -> None:
    a = np.arange(16, dtype=np.int32).reshape(1, 16)
    handle, _ = regions.make("in", BYTES)
    shm.set_shared_memory_region(handle, [a])
    body = _module(client).InferInput("INPUT1", [1, 16], "INT32")
    body.set_data_from_numpy(np.ones((1, 16), np.int32))
    result = client.infer("simple", [body, _shm_input(client, "INPUT0", "in")])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - 1)


@pytest.mark.parametrize(
    ("size", "offset", "message"),
    [
        (BYTES, BYTES + 8, "runs past the end of region 'in'"),
        (BYTES - 4, 0, "needs 64 bytes, shared_memory_byte_size is 60"),
        (BYTES, 2**62, "runs past the end of region 'in'"),
        (2**62, 0, "needs 64 bytes, shared_memory_byte_size is 4611686018427387904"),
    ],
)
def test_offsets_and_sizes_are_checked_before_any_read(
    client: Any, regions: Regions, size: int, offset: int, message: str
) -> None:
    regions.make("in", 2 * BYTES)
    with pytest.raises(InferenceServerException, match=message):
        client.infer(
            "simple", [_shm_input(client, "INPUT0", "in", size, offset), _shm_input(client, "INPUT1", "in")]
        )


def test_unregistered_regions_are_refused(client: Any, regions: Regions) -> None:
    regions.make("in", 2 * BYTES)
    with pytest.raises(InferenceServerException, match="region 'nope' is not registered"):
        client.infer("simple", [_shm_input(client, "INPUT0", "nope"), _shm_input(client, "INPUT1", "in")])
    a = _shm_input(client, "INPUT0", "in")
    b = _shm_input(client, "INPUT1", "in", offset=BYTES)
    with pytest.raises(InferenceServerException, match="output 'OUTPUT0': shared memory region 'gone'"):
        client.infer("simple", [a, b], outputs=[_shm_output(client, "OUTPUT0", "gone")])
    # An output too small for the result: refused, and nothing is written past it.
    regions.make("small", BYTES)
    with pytest.raises(
        InferenceServerException, match="needs 64 bytes, more than its shared_memory_byte_size 32"
    ):
        client.infer("simple", [a, b], outputs=[_shm_output(client, "OUTPUT0", "small", size=32)])


def test_unregistered_when_none_is_registered(client: Any) -> None:
    with pytest.raises(InferenceServerException, match="region 'nope' is not registered"):
        client.infer("simple", [_shm_input(client, "INPUT0", "nope"), _shm_input(client, "INPUT1", "nope")])


def test_declared_shapes_are_admitted_before_the_region_is_read(client: Any, regions: Regions) -> None:
    regions.make("in", 2 * BYTES)
    tensor = _module(client).InferInput("INPUT0", [1, 17], "INT32")
    tensor.set_shared_memory("in", 68)
    with pytest.raises(InferenceServerException, match="expects shape"):
        client.infer("simple", [tensor, _shm_input(client, "INPUT1", "in")])


def test_a_region_unlinked_or_truncated_fails_the_request_cleanly(client: Any, regions: Regions) -> None:
    handle, key = regions.make("in", 2 * BYTES)
    inputs = [_shm_input(client, "INPUT0", "in"), _shm_input(client, "INPUT1", "in", offset=BYTES)]
    client.infer("simple", inputs)
    # Truncated behind the server's back: a mapping would SIGBUS; the server answers instead.
    fd = os.open(f"/dev/shm{key}", os.O_RDWR)
    try:
        os.ftruncate(fd, 8)
    finally:
        os.close(fd)
    with pytest.raises(InferenceServerException, match="was truncated to 8 bytes"):
        client.infer("simple", inputs)
    os.unlink(f"/dev/shm{key}")
    with pytest.raises(InferenceServerException, match="was unlinked by its owner"):
        client.infer("simple", inputs)
    assert client.is_server_live()


def test_registration_is_checked(client: Any, regions: Regions) -> None:
    _, key = regions.make("in", BYTES)
    with pytest.raises(InferenceServerException, match="already registered"):
        client.register_system_shared_memory("in", key, BYTES)
    with pytest.raises(InferenceServerException, match="runs past the end of key"):
        client.register_system_shared_memory("big", key, BYTES * 2)
    with pytest.raises(InferenceServerException, match="unable to open key"):
        client.register_system_shared_memory("missing", "/inferd_no_such_key", BYTES)
    for hostile in ("/../etc/passwd", "/a/b", "..", "/dev/shm/x", "x" * 300):
        with pytest.raises(InferenceServerException, match="one POSIX shared memory name"):
            client.register_system_shared_memory("bad", hostile, BYTES)
    with pytest.raises(InferenceServerException, match="name is 1 to 128"):
        client.register_system_shared_memory("n" * 200, key, BYTES)
    assert set(_status(client)) == {"in"}
    client.unregister_system_shared_memory("in")
    client.unregister_system_shared_memory("in")  # already gone: not an error, as in Triton
    assert _status(client) == {}


def test_cuda_shared_memory_is_answered_as_unsupported(server: RunningServer) -> None:
    http = httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    assert http.get_cuda_shared_memory_status() == []
    http.unregister_cuda_shared_memory()
    status, body = post_json(
        server.http_url,
        "/v2/cudasharedmemory/region/r/register",
        {"raw_handle": {"b64": ""}, "device_id": 0, "byte_size": 8},
    )
    assert status == 501 and "CUDA shared memory is not supported" in body["error"]
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    assert len(grpc.get_cuda_shared_memory_status().regions) == 0
    with pytest.raises(InferenceServerException, match="CUDA shared memory is not supported"):
        grpc.register_cuda_shared_memory("r", b"", 0, 8)


def test_rest_routes_refuse_bad_bodies(server: RunningServer) -> None:
    status, body = post_json(server.http_url, "/v2/systemsharedmemory/region/r/register", {"key": 5})
    assert status == 400 and "'key' string" in body["error"]
    status, body = post_json(
        server.http_url, "/v2/systemsharedmemory/region/r/register", {"key": "/k", "byte_size": -1}
    )
    assert status == 400 and "non-negative" in body["error"]
    status, _, _ = request(server.http_url, "GET", "/v2/systemsharedmemory/region/nope/status")
    assert status == 404


def test_grpc_stream_requests_read_and_write_regions(server: RunningServer) -> None:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    made = Regions(client)
    try:
        a = np.arange(16, dtype=np.int32).reshape(1, 16)
        inputs, _ = made.make("in", 2 * BYTES)
        shm.set_shared_memory_region(inputs, [a, a])
        outputs, _ = made.make("out", BYTES)
        answers: queue.Queue[Any] = queue.Queue()
        client.start_stream(lambda result, error: answers.put(error or result))
        try:
            client.async_stream_infer(
                "simple",
                [_shm_input(client, "INPUT0", "in"), _shm_input(client, "INPUT1", "in", offset=BYTES)],
                outputs=[_shm_output(client, "OUTPUT0", "out")],
            )
            answer = answers.get(timeout=30)
        finally:
            client.stop_stream()
        assert not isinstance(answer, Exception), answer
        np.testing.assert_array_equal(shm.get_contents_as_numpy(outputs, np.int32, [1, 16]), a + a)
    finally:
        made.close()
