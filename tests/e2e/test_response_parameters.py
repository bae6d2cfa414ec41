"""Response parameters a Python model sets (``inferd.Response``) reach tritonclient over REST (JSON
and binary responses) and gRPC (unary and stream), from thread and process instances; bad or
reserved ones are a 500 that says what was wrong, and a plain outputs dict shows none."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pymodels
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from httputil import post_json
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

TIMEOUT_S = 60
BATCHING = "dynamic_batching:\n  max_queue_delay_ms: 1\n"
MODELS = ["echo", "echo_proc"]  # one instance as a thread of the server, and in a worker process

# FP32 [batch, 2] -> y = 2x. The "respond" request parameter picks what predict returns: a Response
# with parameters derived from the request's ("good", the default), the plain dict ("plain"), or
# parameters the server must refuse.
ECHO = """
import numpy as np
from inferd import Model, Response, Tensor


class Echo(Model):
    inputs = [Tensor("x", "FP32", [-1, 2])]
    outputs = [Tensor("y", "FP32", [-1, 2])]
    max_batch_size = 8

    def predict(self, inputs, parameters):
        outputs = {"y": inputs["x"] * 2}
        respond = parameters.get("respond", "good")
        if respond == "plain":
            return outputs
        if respond == "reserved":
            return Response(outputs, {"triton_final_response": True})
        if respond == "nested":
            return Response(outputs, {"label": [1, 2]})
        label = parameters.get("label", "none")
        return Response(outputs, {"label": label, "count": 7, "ok": True, "ratio": 0.5})

    def predict_stream(self, inputs, parameters):
        for step in range(2):
            yield Response({"y": inputs["x"] * step}, {"step": step})
"""
EXPECTED = {"label": "a", "count": 7, "ok": True, "ratio": 0.5}
_ROW = {"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.0]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("response-parameter-models")
    pymodels.write(root, "echo", ECHO, config=BATCHING)
    pymodels.write(root, "echo_proc", ECHO, config=BATCHING + "instance_kind: process\n")
    pymodels.write(root, "echo_cached", ECHO, config=BATCHING + "response_cache: true\n")
    running = start_server(root, tmp_path_factory.mktemp("response-parameter-server"))
    yield running
    assert running.stop() == 0, running.log()


def _infer(server: RunningServer, protocol: str, model: str, **kwargs: Any) -> Any:
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    tensor = module.InferInput("x", [1, 2], "FP32")
    tensor.set_data_from_numpy(np.array([[1.0, 2.0]], np.float32))
    return module.InferenceServerClient(url).infer(model, [tensor], **kwargs)


def _grpc_parameters(message: Any) -> dict[str, Any]:
    return {key: getattr(p, p.WhichOneof("parameter_choice")) for key, p in message.parameters.items()}


@pytest.mark.parametrize("model", MODELS)
def test_tritonclient_sees_the_response_parameters(server: RunningServer, model: str) -> None:
    # REST, binary outputs (tritonclient's default): the parameters are in the JSON header part.
    result = _infer(server, "http", model, parameters={"label": "a"})
    assert result.get_response()["parameters"] == EXPECTED
    np.testing.assert_allclose(result.as_numpy("y"), [[2.0, 4.0]])
    assert result.get_response()["outputs"][0]["parameters"] == {"binary_data_size": 8}
    # REST, JSON outputs.
    status, body = post_json(
        server.http_url, f"/v2/models/{model}/infer", {"inputs": [_ROW], "parameters": {"label": "a"}}
    )
    assert status == 200, body
    assert body["parameters"] == EXPECTED and body["outputs"][0]["data"] == [2.0, 4.0]
    # gRPC: each value in the InferParameter field of its kind.
    response = _infer(server, "grpc", model, parameters={"label": "a"}).get_response()
    assert {k: p.WhichOneof("parameter_choice") for k, p in response.parameters.items()} == {
        "label": "string_param",
        "count": "int64_param",
        "ok": "bool_param",
        "ratio": "double_param",
    }
    assert _grpc_parameters(response) == EXPECTED


@pytest.mark.parametrize("model", MODELS)
def test_a_plain_outputs_dict_shows_no_parameters(server: RunningServer, model: str) -> None:
    assert "parameters" not in _infer(server, "http", model, parameters={"respond": "plain"}).get_response()
    assert not _infer(server, "grpc", model, parameters={"respond": "plain"}).get_response().parameters


@pytest.mark.parametrize("model", MODELS)
def test_concurrent_requests_each_get_their_own_parameters(server: RunningServer, model: str) -> None:
    """Batched together only with equal request parameters, each response carries its request's label."""
    labels = [f"client-{i % 4}" for i in range(16)]

    def send(index: int) -> Any:
        protocol = "http" if index % 2 else "grpc"
        return _infer(server, protocol, model, parameters={"label": labels[index]}).get_response()

    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(send, range(len(labels))))
    for label, response in zip(labels, responses, strict=True):
        got = response["parameters"] if isinstance(response, dict) else _grpc_parameters(response)
        assert got["label"] == label


@pytest.mark.parametrize(
    ("respond", "phrase"),
    [
        ("reserved", "the key 'triton_final_response', which is the server's own"),
        ("nested", "'label' has type list; a value is a bool, int, float or str"),
    ],
)
@pytest.mark.parametrize("model", MODELS)
def test_bad_response_parameters_are_a_500_and_the_model_keeps_serving(
    server: RunningServer, model: str, respond: str, phrase: str
) -> None:
    status, body = post_json(
        server.http_url, f"/v2/models/{model}/infer", {"inputs": [_ROW], "parameters": {"respond": respond}}
    )
    assert status == 500, body
    assert f"model {model}/1: predict returned response parameters" in body["error"]
    assert phrase in body["error"]
    with pytest.raises(InferenceServerException) as caught:
        _infer(server, "grpc", model, parameters={"respond": respond})
    assert caught.value.status() == "StatusCode.INTERNAL" and phrase in caught.value.message()
    assert _infer(server, "http", model, parameters={"label": "a"}).get_response()["parameters"] == EXPECTED


@pytest.mark.parametrize("model", MODELS)
def test_a_grpc_stream_carries_each_responses_parameters(server: RunningServer, model: str) -> None:
    results: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    tensor = grpcclient.InferInput("x", [1, 2], "FP32")
    tensor.set_data_from_numpy(np.array([[1.0, 2.0]], np.float32))
    try:
        client.async_stream_infer(model, [tensor], enable_empty_final_response=True)
        seen = []
        while True:
            result, error = results.get(timeout=TIMEOUT_S)
            assert error is None, error
            seen.append(_grpc_parameters(result.get_response()))
            if seen[-1]["triton_final_response"]:
                break
    finally:
        client.stop_stream()
    assert seen == [
        {"step": 0, "triton_final_response": False},
        {"step": 1, "triton_final_response": False},
        {"triton_final_response": True},
    ]


def test_responses_with_parameters_are_not_cached(server: RunningServer) -> None:
    """The cache stores tensors only: a response with parameters is answered by the model each time
    (and keeps them); one without is cached as before."""
    client = httpclient.InferenceServerClient(server.http_url)

    def hits() -> int:
        stats = client.get_inference_statistics("echo_cached")["model_stats"][0]
        return int(stats["inference_stats"]["cache_hit"]["count"])

    for _ in range(2):
        result = _infer(server, "http", "echo_cached", parameters={"label": "a"})
        assert result.get_response()["parameters"] == EXPECTED
    assert hits() == 0
    for _ in range(2):
        assert (
            "parameters"
            not in _infer(server, "http", "echo_cached", parameters={"respond": "plain"}).get_response()
        )
    assert hits() == 1
