"""Decoupled Python models (predict_stream) streamed for real: the generate extension (generate,
generate_stream as server-sent events), tritonclient's gRPC decoupled streams (sync and aio), errors
before and after a stream starts, and clients vanishing mid-stream (every generator closed)."""

from __future__ import annotations

import asyncio
import http.client
import json
import queue
import signal
import socket
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import pymodels
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aioclient
import tritonclient.http as httpclient
from httputil import post_json, request
from lifecycleutil import wait_until
from serverctl import RunningServer, start_server

TIMEOUT_S = 60

# One word of text_input per response, with how many of this process's streams are open. "boom"
# raises; "slow" words take 50 ms each; "forever" never ends.
WORDS = """
import itertools
import threading
import time
import numpy as np
from inferd import Model, Tensor

class Words(Model):
    inputs = [Tensor("text_input", "BYTES", [1])]
    outputs = [Tensor("text_output", "BYTES", [1]), Tensor("open", "INT32", [1])]
    open_streams = 0
    lock = threading.Lock()

    def predict(self, inputs):
        return {"text_output": inputs["text_input"], "open": np.array([0], dtype=np.int32)}

    def predict_stream(self, inputs):
        words = inputs["text_input"][0].decode().split()
        if words[:1] == ["forever"]:
            words = itertools.repeat("tick")
        with Words.lock:
            Words.open_streams += 1
        try:
            for word in words:
                if word == "boom":
                    raise ValueError("boom at a word")
                if word in ("slow", "tick"):
                    time.sleep(0.05)
                yield {
                    "text_output": np.array([word.encode()], dtype=object),
                    "open": np.array([Words.open_streams], dtype=np.int32),
                }
        finally:
            with Words.lock:
                Words.open_streams -= 1
"""
CONFIG = "instances: 2\n"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("models")
    pymodels.write(root, "words", WORDS, config=CONFIG)
    pymodels.write(root, "plus", pymodels.add_constant(1.5))  # a plain (batched) model
    pymodels.write(root, "words_process", WORDS, config="instance_kind: process\n")
    running = start_server(root, tmp_path_factory.mktemp("server"), "--max-body-bytes", "4096")
    yield running
    assert running.stop() == 0, running.log()


def sse_events(server: RunningServer, path: str, document: Any) -> tuple[int, str, list[dict[str, Any]]]:
    status, headers, body = request(server.http_url, "POST", path, json.dumps(document).encode())
    if not headers.get("content-type", "").startswith("text/event-stream"):
        return status, headers.get("content-type", ""), [json.loads(body)]
    events = [json.loads(chunk[len(b"data: ") :]) for chunk in body.split(b"\n\n") if chunk]
    return status, headers["content-type"], events


def open_streams(server: RunningServer) -> int:
    status, body = post_json(server.http_url, "/v2/models/words/generate", {"text_input": "probe"})
    assert status == 200, body
    return int(body["open"]) - 1  # less the probe's own stream


def test_server_metadata_lists_the_generate_extension(server: RunningServer) -> None:
    status, _, body = request(server.http_url, "GET", "/v2")
    assert status == 200 and "generate" in json.loads(body)["extensions"]


def test_decoupled_models_say_so_in_their_config(server: RunningServer) -> None:
    """Triton's model_transaction_policy.decoupled, which perf_analyzer and tritonclient users read
    to know a request may get many responses; absent for a model that answers once."""
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    for model in ("words", "words_process"):
        assert http.get_model_config(model)["model_transaction_policy"] == {"decoupled": True}
        assert grpc.get_model_config(model).config.model_transaction_policy.decoupled
    assert "model_transaction_policy" not in http.get_model_config("plus")
    assert not grpc.get_model_config("plus").config.HasField("model_transaction_policy")


def test_generate_stream_sends_each_response_then_done(server: RunningServer) -> None:
    status, content_type, events = sse_events(
        server, "/v2/models/words/generate_stream", {"text_input": "hello streaming world"}
    )
    assert status == 200 and content_type.startswith("text/event-stream")
    assert [e.get("text_output") for e in events] == ["hello", "streaming", "world", None]
    assert [e["done"] for e in events] == [False, False, False, True]
    assert all(e["model_name"] == "words" and e["model_version"] == "1" for e in events)


def test_a_worker_process_streams_too(server: RunningServer) -> None:
    status, _, events = sse_events(server, "/v2/models/words_process/generate_stream", {"text_input": "a b"})
    assert status == 200 and [e.get("text_output") for e in events] == ["a", "b", None]
    answers = _grpc_stream(server, {"p": "c d"}, model="words_process")
    assert [r.as_numpy("text_output")[0] for r in answers["p"][:-1]] == [b"c", b"d"]


def test_generate_answers_one_document(server: RunningServer) -> None:
    status, body = post_json(server.http_url, "/v2/models/words/versions/1/generate", {"text_input": "a b c"})
    assert status == 200
    assert body["text_output"] == "abc" and body["model_name"] == "words"


def test_generate_on_a_plain_model_maps_keys_to_tensors(server: RunningServer) -> None:
    status, body = post_json(server.http_url, "/v2/models/plus/generate", {"INPUT0": [1, 2, 3, 4]})
    assert status == 200 and body == {
        "model_name": "plus",
        "model_version": "1",
        "OUTPUT0": [2.5, 3.5, 4.5, 5.5],
    }
    status, _, events = sse_events(server, "/v2/models/plus/generate_stream", {"INPUT0": [0, 0, 0, 0]})
    assert status == 200 and events == [
        {"model_name": "plus", "model_version": "1", "OUTPUT0": [1.5] * 4, "done": True}
    ]
    status, body = post_json(server.http_url, "/v2/models/plus/generate", {"INPUT0": [1, 2]})
    assert status == 400 and "shape" in body["error"]
    status, body = post_json(server.http_url, "/v2/models/plus/generate", {"INPUT0": [[1, 2, 3, 4]]})
    assert status == 400 and "flat list" in body["error"]


def test_errors_before_the_stream_starts_have_their_status(server: RunningServer) -> None:
    path = "/v2/models/words/generate_stream"
    status, content_type, events = sse_events(server, path, {"text_input": "boom"})
    assert status == 500 and content_type == "application/json"
    assert "ValueError: boom at a word" in events[0]["error"]
    status, _, events = sse_events(server, path, {"text_input": "x", "nope": 1})
    assert status == 400 and "no input 'nope'" in events[0]["error"]
    status, _, events = sse_events(server, path, {"text_input": 3})
    assert status == 400 and "BYTES" in events[0]["error"]
    status, _, body = request(server.http_url, "POST", path, b"[1, 2")
    assert status == 400 and "not valid JSON" in json.loads(body)["error"]
    status, _, body = request(server.http_url, "POST", path, json.dumps({"text_input": "x" * 8000}).encode())
    assert status == 413
    status, _, events = sse_events(server, "/v2/models/nothere/generate_stream", {"text_input": "x"})
    assert status == 404


def test_an_error_after_the_stream_started_is_an_error_event(server: RunningServer) -> None:
    status, _, events = sse_events(server, "/v2/models/words/generate_stream", {"text_input": "one two boom"})
    assert status == 200
    assert [e.get("text_output") for e in events[:2]] == ["one", "two"]
    assert "ValueError: boom at a word" in events[2]["error"] and len(events) == 3


def _grpc_stream(server: RunningServer, texts: dict[str, str], model: str = "words") -> dict[str, list[Any]]:
    """Send each (id, text) on one stream; the responses per id, in order, until every final one."""
    results: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for request_id, text in texts.items():
            tensor = grpcclient.InferInput("text_input", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([text.encode()], dtype=object))
            client.async_stream_infer(
                model, [tensor], request_id=request_id, enable_empty_final_response=True
            )
        answers: dict[str, list[Any]] = {request_id: [] for request_id in texts}
        finished: list[str] = []
        while len(finished) < len(texts):
            result, error = results.get(timeout=TIMEOUT_S)
            assert error is None, error
            response = result.get_response()
            answers[response.id].append(result)
            if response.parameters["triton_final_response"].bool_param:
                finished.append(response.id)
        answers["order"] = finished
        return answers
    finally:
        client.stop_stream()


def test_grpc_decoupled_stream_answers_each_request_many_times(server: RunningServer) -> None:
    answers = _grpc_stream(server, {"a": "one two", "b": "three"})
    for request_id, words in (("a", [b"one", b"two"]), ("b", [b"three"])):
        results = answers[request_id]
        assert [r.as_numpy("text_output")[0] for r in results[:-1]] == words
        assert not any(r.get_response().parameters["triton_final_response"].bool_param for r in results[:-1])
        final = results[-1].get_response()  # the empty final response tritonclient asked for
        assert final.parameters["triton_final_response"].bool_param and not final.outputs


def test_each_stream_counts_in_the_statistics_as_triton_counts_it(server: RunningServer) -> None:
    """One inference, one execution and one pass through the queue per request: perf_analyzer, given
    no model version, measures the version whose queue count grew (with none, its streaming mode
    failed with 'failed to find the requested model version')."""
    client = grpcclient.InferenceServerClient(server.grpc_url)

    def counts() -> tuple[int, ...]:
        stats = client.get_inference_statistics("words").model_stats[0]
        inference = stats.inference_stats
        compute = (inference.compute_input, inference.compute_infer, inference.compute_output)
        return (
            stats.inference_count,
            stats.execution_count,
            inference.queue.count,
            inference.success.count,
            *(c.count for c in compute),  # perf_analyzer aborts unless the three are equal
        )

    before = counts()
    _grpc_stream(server, {"a": "one two", "b": "three"})
    assert tuple(b - a for a, b in zip(before, counts(), strict=True)) == (2,) * 7


def test_grpc_requests_on_one_stream_run_concurrently(server: RunningServer) -> None:
    # Sent first, the slow request (20 x 50 ms) still finishes last: the fast one did not wait for it.
    answers = _grpc_stream(server, {"slow": " ".join(["slow"] * 20), "fast": "quick"})
    assert answers["order"] == ["fast", "slow"]
    assert len(answers["slow"]) == 21


def test_grpc_stream_error_ends_only_its_request(server: RunningServer) -> None:
    results: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        for request_id, text in (("bad", "boom"), ("good", "fine")):
            tensor = grpcclient.InferInput("text_input", [1], "BYTES")
            tensor.set_data_from_numpy(np.array([text.encode()], dtype=object))
            client.async_stream_infer(
                "words", [tensor], request_id=request_id, enable_empty_final_response=True
            )
        seen = [results.get(timeout=TIMEOUT_S) for _ in range(3)]
    finally:
        client.stop_stream()
    errors = [error for _, error in seen if error is not None]
    assert len(errors) == 1 and "boom at a word" in str(errors[0])
    good = [r.as_numpy("text_output") for r, e in seen if e is None and r.get_response().outputs]
    assert [g[0] for g in good] == [b"fine"]


def test_grpc_aio_client_streams(server: RunningServer) -> None:
    async def run() -> list[bytes]:
        client = aioclient.InferenceServerClient(server.grpc_url)
        tensor = aioclient.InferInput("text_input", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([b"x y z"], dtype=object))

        async def requests() -> Any:
            yield {
                "model_name": "words",
                "inputs": [tensor],
                "request_id": "r1",
                "enable_empty_final_response": True,
            }

        words = []
        try:
            async for result, error in client.stream_infer(requests()):
                assert error is None, error
                response = result.get_response()
                assert response.id == "r1"
                if response.parameters["triton_final_response"].bool_param:
                    break
                words.append(result.as_numpy("text_output")[0])
        finally:
            await client.close()
        return words

    assert asyncio.run(run()) == [b"x", b"y", b"z"]


def test_clients_vanishing_mid_stream_close_every_generator(server: RunningServer) -> None:
    host, port = server.http_url.rsplit(":", 1)
    body = json.dumps({"text_input": "forever"}).encode()
    for _ in range(20):  # HTTP: read the first event, then drop the connection
        connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
        connection.request("POST", "/v2/models/words/generate_stream", body=body)
        response = connection.getresponse()
        assert response.status == 200 and response.read(6) == b"data: "
        response.fp.raw._sock.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        connection.close()
    for _ in range(5):  # /generate (one document): drop the connection while it is generated
        connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
        connection.request("POST", "/v2/models/words/generate", body=body)
        wait_until(lambda: open_streams(server) > 0, TIMEOUT_S, "the generation to start")
        connection.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        connection.close()
    for _ in range(5):  # gRPC: cancel a stream whose request is mid-generation
        seen: queue.SimpleQueue[Any] = queue.SimpleQueue()
        client = grpcclient.InferenceServerClient(server.grpc_url)
        client.start_stream(callback=partial(lambda q, result, error: q.put(result), seen))
        tensor = grpcclient.InferInput("text_input", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([b"forever"], dtype=object))
        client.async_stream_infer("words", [tensor])
        seen.get(timeout=TIMEOUT_S)
        client.stop_stream(cancel_requests=True)
    wait_until(lambda: open_streams(server) == 0, TIMEOUT_S, "every abandoned stream to be closed")


def test_sigterm_lets_running_streams_finish_and_refuses_new_ones(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    root = tmp_path_factory.mktemp("drain-models")
    pymodels.write(root, "words", WORDS, config=CONFIG)
    running = start_server(root, tmp_path_factory.mktemp("drain-server"))
    host, port = running.http_url.rsplit(":", 1)
    body = json.dumps({"text_input": " ".join(["slow"] * 20)}).encode()  # about 1 s of events
    connection = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT_S)
    try:
        connection.request("POST", "/v2/models/words/generate_stream", body=body)
        response = connection.getresponse()
        assert response.status == 200 and response.read(6) == b"data: "
        running.process.send_signal(signal.SIGTERM)
        rest = response.read()  # the stream runs to its end
    finally:
        connection.close()
    events = [
        json.loads(chunk.removeprefix(b"data: ")) for chunk in (b"data: " + rest).split(b"\n\n") if chunk
    ]
    assert len(events) == 21 and events[-1]["done"] is True and "error" not in events[-2]
    assert running.process.wait(timeout=TIMEOUT_S) == 0, running.log()
    with pytest.raises(OSError):  # no longer listening
        socket.create_connection((host, int(port)), timeout=5).close()
