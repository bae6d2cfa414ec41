"""Drive one request over tritonclient's gRPC stream and collect its responses up to the final one."""

from __future__ import annotations

import queue
from typing import Any

import tritonclient.grpc as grpcclient

TIMEOUT_S = 60


def stream_responses(url: str, model: str, inputs: list[Any], **kwargs: Any) -> list[Any]:
    """The responses to one ``async_stream_infer`` call (``kwargs`` go to it), in order, without the
    empty final response that ends them; an error response fails the caller's test."""
    results: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        client.async_stream_infer(model, inputs, enable_empty_final_response=True, **kwargs)
        answers = []
        while True:
            result, error = results.get(timeout=TIMEOUT_S)
            assert error is None, error
            if result.get_response().parameters["triton_final_response"].bool_param:
                return answers
            answers.append(result)
    finally:
        client.stop_stream()
