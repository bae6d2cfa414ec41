"""Triton's generate extension: ``POST /v2/models/{m}[/versions/{v}]/generate`` and ``generate_stream``.

A generative model takes ``text_input`` and sampling ``parameters`` and answers ``text_output``. Any
other model takes each JSON key but ``parameters`` as the input tensor of that name (a string, a
number, a boolean or a flat list) and answers each output tensor as a JSON field; a decoupled model
(``predict_stream``) streams one event per response. Stream events carry the Open Inference
Protocol's ``done`` flag (true on the last); an error after the stream started is one
``{"error": ...}`` event, then the stream ends.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import orjson

from inferd.dataplane.dataplane import DataPlane
from inferd.datatypes import numpy_dtype
from inferd.errors import InferdError, InvalidRequest
from inferd.generative.contract import SamplingParams
from inferd.http.streaming import StreamResponse, primed
from inferd.protocol.sampling import sampling_params
from inferd.protocol.sse import event
from inferd.security.tokens import admit_tokens, metered
from inferd.types import InferRequest, InferResponse, Tensor

log = logging.getLogger(__name__)
# Triton's example sends "stream" among the parameters; the endpoint already says which it is.
_IGNORED = frozenset({"stream"})


def parse_body(body: bytes) -> dict[str, Any]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise InvalidRequest("the request body must be a JSON object")
    return document


def _parameters(document: dict[str, Any]) -> dict[str, Any]:
    parameters = document.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InvalidRequest("'parameters' must be a JSON object")
    return parameters


async def generate(
    dp: DataPlane, name: str, version: str | None, body: bytes, stream: bool
) -> StreamResponse | dict[str, Any]:
    """The answer to one generate (a JSON document) or generate_stream (events) request."""
    document = parse_body(body)
    kind = dp.stream_kind(name, version)
    if kind == "generative":
        events = _generated(dp, name, version, _generative_request(document, dp, name, version))
    else:
        request = _tensor_request(dp, name, version, document)
        events = _decoupled(dp, request) if kind == "decoupled" else _single(dp, request)
    if stream:
        return StreamResponse(_sse(await primed(events)))
    return await _collect(events)


def _generative_request(
    document: dict[str, Any], dp: DataPlane, name: str, version: str | None
) -> tuple[str, dict[str, Any]]:
    extra = sorted(set(document) - {"text_input", "parameters"})
    if extra:
        raise InvalidRequest(f"unknown field(s) {', '.join(extra)}: a generative model takes text_input")
    text = document.get("text_input")
    if not isinstance(text, str):
        raise InvalidRequest("'text_input' must be a string")
    return text, _parameters(document)


async def _generated(
    dp: DataPlane, name: str, version: str | None, request: tuple[str, dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    text, parameters = request
    account = admit_tokens()  # 429 while the caller's token budget is spent
    async with dp.generation(name, version) as held:
        params: SamplingParams = sampling_params(parameters, held.generator.limits, _IGNORED)
        tokens = held.generator.generate(text, params, uuid.uuid4().hex)
        if account is not None:
            tokens = metered(account, held.model, held.version, tokens)
        try:
            async for token in tokens:
                answer: dict[str, Any] = {
                    "model_name": held.model,
                    "model_version": held.version,
                    "text_output": token.text,
                }
                if token.finish_reason is not None:
                    answer["finish_reason"] = token.finish_reason
                    answer["usage"] = {
                        "prompt_tokens": token.prompt_tokens,
                        "completion_tokens": token.completion_tokens,
                    }
                    answer["done"] = True
                    yield answer
                    return
                answer["done"] = False
                yield answer
        finally:
            await tokens.aclose()  # type: ignore[attr-defined]


def _tensor_request(dp: DataPlane, name: str, version: str | None, document: dict[str, Any]) -> InferRequest:
    """Each key but ``parameters`` as the model input of that name."""
    specs = {spec["name"]: spec for spec in dp.control.model_metadata(name, version)["inputs"]}
    inputs = []
    for key, value in document.items():
        if key == "parameters":
            continue
        spec = specs.get(key)
        if spec is None:
            raise InvalidRequest(f"model '{name}' has no input '{key}' (inputs: {', '.join(specs)})")
        inputs.append(Tensor(key, spec["datatype"], _array(key, value, spec)))
    return InferRequest(name, version, inputs, parameters=_parameters(document))


def _array(key: str, value: Any, spec: dict[str, Any]) -> np.ndarray:
    values = value if isinstance(value, list) else [value]
    datatype = spec["datatype"]
    try:
        if datatype == "BYTES":
            if not all(isinstance(v, str) for v in values):
                raise InvalidRequest(f"input '{key}' is BYTES: give a string or a list of strings")
            array = np.empty(len(values), dtype=object)
            array[:] = [v.encode() for v in values]
        else:
            if not all(isinstance(v, int | float | bool) for v in values):
                raise InvalidRequest(f"input '{key}' is {datatype}: give a number or a flat list of them")
            array = np.asarray(values, dtype=numpy_dtype(datatype))
    except (ValueError, OverflowError, TypeError) as exc:
        raise InvalidRequest(f"input '{key}': {exc}") from None
    shape = spec["shape"]
    # A scalar or flat list fills the last dimension; the leading ones (batch included) are 1.
    return array.reshape((1,) * (len(shape) - 1) + (array.size,)) if len(shape) > 1 else array


def _fields(response: InferResponse) -> dict[str, Any]:
    answer: dict[str, Any] = {"model_name": response.model, "model_version": response.version}
    for tensor in response.outputs:
        data = tensor.data
        if tensor.datatype == "BYTES":
            items = [v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in data.flat]
        else:
            items = data.ravel().tolist()
        answer[tensor.name] = items[0] if len(items) == 1 else items
    return answer


async def _decoupled(dp: DataPlane, request: InferRequest) -> AsyncIterator[dict[str, Any]]:
    responses = dp.stream(request)
    model = version = ""
    try:
        async for response in responses:
            model, version = response.model, response.version
            yield {**_fields(response), "done": False}
    finally:
        await responses.aclose()  # type: ignore[attr-defined]
    yield {"model_name": model or request.model, "model_version": version, "done": True}


async def _single(dp: DataPlane, request: InferRequest) -> AsyncIterator[dict[str, Any]]:
    yield {**_fields(await dp.infer(request)), "done": True}


async def _collect(events: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
    """``/generate``: one document; text outputs are concatenated, other fields keep the last value."""
    answer: dict[str, Any] = {}
    text: list[str] = []
    async for item in events:
        for key, value in item.items():
            if key == "text_output" and isinstance(value, str):
                text.append(value)
            elif key != "done":
                answer[key] = value
    if text:
        answer["text_output"] = "".join(text)
    return answer


async def _sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    try:
        async for item in events:
            yield event(item)
    except InferdError as exc:
        yield event({"error": exc.message})
    except Exception as exc:
        error_id = uuid.uuid4().hex[:12]
        log.error("generate_stream failed (error id %s)", error_id, exc_info=exc)
        yield event({"error": f"internal server error (error id {error_id})"})
    finally:
        await events.aclose()  # type: ignore[attr-defined]
