"""Request parameters reach Python models (Triton's parameters extension), over REST and gRPC, from
thread and process instances, never one client's applied to another's rows."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pymodels
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from grpcstream import stream_responses
from httputil import post_json, request
from metricsutil import scrape, value
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

from inferd.runtimes.request_parameters import MAX_NAME_LENGTH, MAX_PARAMETERS, MAX_STRING_LENGTH

TIMEOUT_S = 60
BATCHING = "dynamic_batching:\n  max_queue_delay_ms: 1\n"
# The same model with its one instance as a thread of the server and in a worker process.
MODELS = ["scale", "scale_proc"]


# Both steps scale by the request's "scale": y = x * scale^2, each step's view in its own output.
PIPELINE = """
platform: ensemble
max_batch_size: 8
inputs:
  - {name: x, datatype: FP32, dims: [2]}
outputs:
  - {name: y, datatype: FP32, dims: [2]}
  - {name: seen_first, datatype: BYTES, dims: [1]}
  - {name: seen_second, datatype: BYTES, dims: [1]}
ensemble_scheduling:
  step:
    - {model_name: scale, model_version: -1, input_map: {x: x}, output_map: {y: half, seen: seen_first}}
    - model_name: scale_proc
      model_version: -1
      input_map: {x: half}
      output_map: {y: y, seen: seen_second}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("parameter-models")
    pymodels.write(root, "scale", pymodels.SCALE_BY_PARAMETER, config=BATCHING)
    pymodels.write(
        root, "scale_proc", pymodels.SCALE_BY_PARAMETER, config=BATCHING + "instance_kind: process\n"
    )
    pymodels.write(root, "plus_one", pymodels.add_constant(1.0), config=BATCHING)
    (root / "pipeline" / "1").mkdir(parents=True)
    (root / "pipeline" / "config.yaml").write_text(PIPELINE)
    running = start_server(root, tmp_path_factory.mktemp("parameter-server"))
    yield running
    assert running.stop() == 0, running.log()


def _infer(server: RunningServer, protocol: str, model: str, x: np.ndarray, **kwargs: Any) -> Any:
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    tensor = module.InferInput("x", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return module.InferenceServerClient(url).infer(model, [tensor], **kwargs)


def _seen(result: Any) -> Any:
    """The parameters the model saw for this response's rows (one dict for all of them)."""
    seen = {bytes(s) for s in result.as_numpy("seen").reshape(-1)}
    assert len(seen) == 1, seen
    return json.loads(seen.pop())


@pytest.mark.parametrize("model", MODELS)
def test_tritonclient_parameters_reach_predict(server: RunningServer, model: str) -> None:
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    # REST: numbers, strings and booleans; the server's own keys (timeout here, binary_data_output
    # that tritonclient adds) are not the model's.
    result = _infer(
        server, "http", model, x, parameters={"scale": 2.5, "mode": "a", "on": True}, timeout=10**8
    )
    np.testing.assert_allclose(result.as_numpy("y"), x * 2.5)
    assert _seen(result) == {"scale": 2.5, "mode": "a", "on": True}
    assert "parameters" not in result.get_response()  # nothing echoed back
    # gRPC: tritonclient sends integers as int64_param, strings as string_param.
    result = _infer(server, "grpc", model, x, parameters={"scale": 3, "mode": "b"}, timeout=10**8)
    np.testing.assert_allclose(result.as_numpy("y"), x * 3)
    assert _seen(result) == {"scale": 3, "mode": "b"}
    assert not result.get_response().parameters  # nothing echoed back
    # No parameters: predict(inputs, parameters) gets an empty dict.
    assert _seen(_infer(server, "grpc", model, x)) == {}


def _pending(server: RunningServer, model: str) -> float:
    return value(scrape(server.http_url), "inferd_pending_requests", model=model, version="1")


def _wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.parametrize("model", MODELS)
def test_concurrent_requests_batch_only_with_equal_parameters(
    server: RunningServer, model: str, tmp_path: Path
) -> None:
    """With the one instance held busy, 20 requests queue: 8 with scale 2 (REST and gRPC alike), 8
    with scale 3, 4 with scale 2.0 (equal to 2 in Python, but another value to a model). Released,
    they run as exactly three executions, one per parameter set, and each request gets its own."""
    stats = httpclient.InferenceServerClient(server.http_url)
    before = stats.get_inference_statistics(model)["model_stats"][0]
    gate = tmp_path / "gate"
    blocker = threading.Thread(
        target=_infer,
        args=(server, "http", model, np.zeros((1, 2), np.float32)),
        kwargs={"parameters": {"gate": str(gate)}},
    )
    blocker.start()
    _wait_until(lambda: _pending(server, model) == 1, "the blocking request to execute")
    sends: list[tuple[str, int | float]] = (
        [("http", 2), ("grpc", 2)] * 4 + [("http", 3), ("grpc", 3)] * 4 + [("http", 2.0)] * 4
    )

    def send(index: int) -> tuple[int | float, np.ndarray, Any]:
        protocol, scale = sends[index]
        x = np.array([[index, index + 0.5]], np.float32)
        return scale, x, _infer(server, protocol, model, x, parameters={"scale": scale})

    with ThreadPoolExecutor(len(sends)) as pool:
        futures = [pool.submit(send, index) for index in range(len(sends))]
        try:
            _wait_until(lambda: _pending(server, model) == 1 + len(sends), "every request to queue")
        finally:
            gate.touch()
        results = [future.result(timeout=TIMEOUT_S) for future in futures]
    blocker.join(TIMEOUT_S)
    for scale, x, result in results:
        np.testing.assert_allclose(result.as_numpy("y"), x * scale)
        seen = _seen(result)
        assert seen == {"scale": scale} and type(seen["scale"]) is type(scale)
        # Every request of a parameter set shared one predict call: 8, 8 and 4 rows.
        assert result.as_numpy("rows").reshape(-1).tolist() == [4 if isinstance(scale, float) else 8]
    after = stats.get_inference_statistics(model)["model_stats"][0]
    assert after["execution_count"] - before["execution_count"] == 4  # the blocker, then three
    assert after["inference_count"] - before["inference_count"] == 1 + len(sends)


@pytest.mark.parametrize("model", MODELS)
def test_a_grpc_stream_hands_its_parameters_to_predict_stream(server: RunningServer, model: str) -> None:
    x = np.array([[1.0, 2.0]], np.float32)
    tensor = grpcclient.InferInput("x", [1, 2], "FP32")
    tensor.set_data_from_numpy(x)
    answers = stream_responses(server.grpc_url, model, [tensor], parameters={"scale": 2, "steps": 3})
    assert [a.as_numpy("y").tolist() for a in answers] == [(x * 2 * step).tolist() for step in (1, 2, 3)]
    assert all(_seen(a) == {"scale": 2, "steps": 3} for a in answers)


@pytest.mark.parametrize("model", MODELS)
def test_generate_stream_hands_its_parameters_to_predict_stream(server: RunningServer, model: str) -> None:
    document = {"x": [1.0, 2.0], "parameters": {"scale": 2, "steps": 2, "stream": True}}
    status, _, body = request(
        server.http_url, "POST", f"/v2/models/{model}/generate_stream", json.dumps(document).encode()
    )
    assert status == 200, body
    events = [json.loads(line[len(b"data:") :]) for line in body.splitlines() if line.startswith(b"data:")]
    assert [e.get("y") for e in events] == [[2.0, 4.0], [4.0, 8.0], None]
    # "stream" is the endpoint's own key, never the model's.
    assert {e.get("seen") for e in events[:-1]} == {json.dumps({"scale": 2, "steps": 2}, sort_keys=True)}


_ROW = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}


@pytest.mark.parametrize(
    ("parameters", "phrase"),
    [
        ({"scale": {"nested": 1}}, "parameter 'scale' is an object"),
        ({"scale": [1, 2]}, "parameter 'scale' is an array"),
        ({"scale": None}, "parameter 'scale' is null"),
        ({f"p{i}": i for i in range(MAX_PARAMETERS + 1)}, f"at most {MAX_PARAMETERS} parameters"),
        ({"k" * (MAX_NAME_LENGTH + 1): 1}, f"at most {MAX_NAME_LENGTH} are allowed"),
        ({"mode": "s" * (MAX_STRING_LENGTH + 1)}, f"at most {MAX_STRING_LENGTH} are allowed"),
    ],
)
@pytest.mark.parametrize("model", MODELS)
def test_hostile_parameters_get_a_400(
    server: RunningServer, model: str, parameters: Any, phrase: str
) -> None:
    status, body = post_json(
        server.http_url, f"/v2/models/{model}/infer", {"inputs": [_ROW], "parameters": parameters}
    )
    assert status == 400, body
    assert phrase in body["error"]


@pytest.mark.parametrize("model", MODELS)
def test_hostile_parameters_over_grpc_are_invalid_argument(server: RunningServer, model: str) -> None:
    x = np.ones((1, 2), np.float32)
    for parameters, phrase in [
        ({f"p{i}": i for i in range(MAX_PARAMETERS + 1)}, f"at most {MAX_PARAMETERS} parameters"),
        ({"mode": "s" * (MAX_STRING_LENGTH + 1)}, f"at most {MAX_STRING_LENGTH} are allowed"),
    ]:
        with pytest.raises(InferenceServerException) as caught:
            _infer(server, "grpc", model, x, parameters=parameters)
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
        assert phrase in caught.value.message()
    # The model still answers.
    np.testing.assert_allclose(_infer(server, "grpc", model, x, parameters={"scale": 4}).as_numpy("y"), x * 4)


def test_a_model_taking_inputs_only_is_unchanged(server: RunningServer) -> None:
    """predict(inputs) models never see parameters, so theirs are neither passed nor checked."""
    x = np.ones((1, 4), np.float32)
    module: Any = httpclient
    tensor = module.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(x)
    result = module.InferenceServerClient(server.http_url).infer(
        "plus_one", [tensor], parameters={"scale": 2}
    )
    np.testing.assert_allclose(result.as_numpy("OUTPUT0"), x + 1)
    status, body = post_json(
        server.http_url,
        "/v2/models/plus_one/infer",
        {
            "inputs": [{**_ROW, "name": "INPUT0", "shape": [1, 4], "data": [1.0] * 4}],
            "parameters": {"a": {"b": 1}},
        },
    )
    assert status == 200, body


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_an_ensembles_parameters_reach_every_step(server: RunningServer, protocol: str) -> None:
    """As Triton forwards an ensemble request's parameters to its composing models (core PR 261):
    the model's share goes to each step; the server's own keys (timeout here) do not."""
    x = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    result = _infer(server, protocol, "pipeline", x, parameters={"scale": 2, "mode": "m"}, timeout=10**8)
    np.testing.assert_allclose(result.as_numpy("y"), x * 4)
    for seen in ("seen_first", "seen_second"):
        values = {bytes(v) for v in result.as_numpy(seen).reshape(-1)}
        assert [json.loads(v) for v in values] == [{"mode": "m", "scale": 2}]
    # A parameter a step refuses is the step's 400, naming the step.
    with pytest.raises(InferenceServerException, match="step") as refused:
        _infer(server, protocol, "pipeline", x, parameters={"mode": "m" * (MAX_STRING_LENGTH + 1)})
    assert f"at most {MAX_STRING_LENGTH} are allowed" in str(refused.value)
