"""ModelStreamInfer, decoupled: each request on a stream runs concurrently and may answer many times.

As Triton does: every response carries its request's id and the ``triton_final_response`` parameter
(true on a request's last response); a request sent with ``triton_enable_empty_final_response`` gets
an empty final response after a decoupled model's last one (tritonclient's decoupled streams ask for
it: the model cannot say which response is its last until its generator ends). A generative model
takes a BYTES ``text_input`` tensor and the sampling parameters as request parameters, and answers
one BYTES ``text_output`` per token event, as Triton's vLLM backend does. Errors travel in-band and
end only their request. The stream being cancelled (or the client gone) cancels its requests, which
closes their models' generators.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np

from inferd.dataplane.dataplane import DataPlane
from inferd.errors import InferdError, InvalidRequest
from inferd.names import model_name, model_version
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol._generated import inferd_light_pb2 as light
from inferd.protocol.grpc_codec import decode_infer_request, encode_infer_response, parameter_value
from inferd.protocol.sampling import sampling_params
from inferd.security.tokens import current_account, metered
from inferd.types import InferResponse, Tensor

log = logging.getLogger(__name__)

# Requests of one stream running at once; the reader waits (and so does the client, through HTTP/2
# flow control) past it.
MAX_CONCURRENT_PER_STREAM = 256
_EMPTY_FINAL = "triton_enable_empty_final_response"
_FINAL = "triton_final_response"
# Request parameters that are the protocol's, not sampling's.
_PROTOCOL_PARAMETERS = frozenset({_EMPTY_FINAL, "stream", "priority", "timeout", "sequence_id"})

Unary = Callable[[light.ModelInferRequest], Awaitable[pb.ModelInferResponse]]


class StreamSession:
    """One ModelStreamInfer call. ``unary`` answers a request for a model that does not stream."""

    def __init__(self, dataplane: DataPlane, unary: Unary) -> None:
        self._dp = dataplane
        self._unary = unary
        # Unbounded, so the end sentinel always fits; responses wait for room (a slow client holds
        # its generators back rather than grow this).
        self._out: asyncio.Queue[pb.ModelStreamInferResponse | None] = asyncio.Queue()
        self._room = asyncio.Semaphore(64)
        self._slots = asyncio.Semaphore(MAX_CONCURRENT_PER_STREAM)
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(
        self, requests: AsyncIterator[light.ModelInferRequest]
    ) -> AsyncIterator[pb.ModelStreamInferResponse]:
        reader = asyncio.ensure_future(self._read(requests))
        try:
            while (response := await self._out.get()) is not None:
                self._room.release()
                yield response
            await reader  # raises what reading the requests raised (a refusal by the gate)
        finally:
            reader.cancel()
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.gather(reader, *self._tasks, return_exceptions=True)

    async def _read(self, requests: AsyncIterator[light.ModelInferRequest]) -> None:
        try:
            async for request in requests:
                self._admit_tokens(request)
                await self._slots.acquire()
                task = asyncio.ensure_future(self._answer(request))
                self._tasks.add(task)
                task.add_done_callback(self._finished)
        finally:
            # However reading ended (the last message, a message the gate refused), the requests
            # already accepted are answered before the stream ends.
            if self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)
            # Wakes run(); it then awaits this task, so an exception here still reaches the client.
            self._out.put_nowait(None)

    def _admit_tokens(self, request: light.ModelInferRequest) -> None:
        """A spent token budget ends the stream with RESOURCE_EXHAUSTED, as the gate's refusals do
        (the requests already running finish first). Other errors are the request's own, in-band."""
        account = current_account()
        if account is None or account.limit is None:
            return
        try:
            kind = self._dp.stream_kind(request.model_name, request.model_version or None)
        except InferdError:
            return
        if kind == "generative":
            account.admit()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    async def _answer(self, request: light.ModelInferRequest) -> None:
        request_id = request.id
        try:
            name, version = model_name(request.model_name), model_version(request.model_version)
            empty_final = _flag(request, _EMPTY_FINAL)
            kind = self._dp.stream_kind(name, version)
            if kind == "generative":
                await self._generate(request, name, version)
            elif kind == "decoupled":
                await self._decoupled(request, name, version, empty_final)
            else:
                response = await self._unary(request)
                response.parameters[_FINAL].bool_param = True
                await self._put(pb.ModelStreamInferResponse(infer_response=response))
        except InferdError as exc:
            await self._error(request_id, exc.message)
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            log.error("unexpected error in ModelStreamInfer (error id %s)", error_id, exc_info=exc)
            await self._error(request_id, f"internal server error (error id {error_id})")

    async def _put(self, response: pb.ModelStreamInferResponse) -> None:
        await self._room.acquire()
        self._out.put_nowait(response)

    async def _error(self, request_id: str, message: str) -> None:
        await self._put(
            pb.ModelStreamInferResponse(
                error_message=message, infer_response=pb.ModelInferResponse(id=request_id)
            )
        )

    async def _decoupled(
        self, request: light.ModelInferRequest, name: str, version: str | None, empty_final: bool
    ) -> None:
        decoded = decode_infer_request(request, self._dp.check_servable(name, version))
        responses = self._dp.stream(decoded)
        model, served = name, ""
        try:
            async for response in responses:
                model, served = response.model, response.version
                await self._send(response, final=False)
        finally:
            await responses.aclose()  # type: ignore[attr-defined]
        if empty_final:
            await self._send(InferResponse(model, served, [], id=request.id or None), final=True)

    async def _generate(self, request: light.ModelInferRequest, name: str, version: str | None) -> None:
        prompt = _text_input(request)
        values = {
            key: parameter_value(value)
            for key, value in request.parameters.items()
            if key not in _PROTOCOL_PARAMETERS
        }
        async with self._dp.generation(name, version) as held:
            params = sampling_params(values, held.generator.limits)
            tokens = held.generator.generate(prompt, params, request.id or uuid.uuid4().hex)
            account = current_account()
            if account is not None:
                tokens = metered(account, held.model, held.version, tokens)
            try:
                async for token in tokens:
                    text = np.empty(1, dtype=object)
                    text[0] = token.text.encode()
                    response = InferResponse(
                        held.model,
                        held.version,
                        [Tensor("text_output", "BYTES", text)],
                        id=request.id or None,
                    )
                    await self._send(response, final=token.finish_reason is not None)
                    if token.finish_reason is not None:
                        return
            finally:
                await tokens.aclose()  # type: ignore[attr-defined]

    async def _send(self, response: InferResponse, final: bool) -> None:
        message = encode_infer_response(response)
        message.parameters[_FINAL].bool_param = final
        await self._put(pb.ModelStreamInferResponse(infer_response=message))


def _flag(request: light.ModelInferRequest, key: str) -> bool:
    if key not in request.parameters:
        return False
    value: Any = parameter_value(request.parameters[key])
    if not isinstance(value, bool):
        raise InvalidRequest(f"parameter '{key}' must be a boolean")
    return value


def _text_input(request: light.ModelInferRequest) -> str:
    """The prompt: the one element of a BYTES ``text_input`` tensor, UTF-8."""
    decoded = decode_infer_request(request)
    tensors = {tensor.name: tensor for tensor in decoded.inputs}
    unknown = sorted(set(tensors) - {"text_input"})
    if unknown:
        raise InvalidRequest(f"unknown input(s) {', '.join(unknown)}: a generative model takes text_input")
    tensor = tensors.get("text_input")
    if tensor is None or tensor.datatype != "BYTES" or tensor.data.size != 1:
        raise InvalidRequest("a generative model takes one BYTES element 'text_input'")
    value = tensor.data.flat[0]
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("'text_input' is not valid UTF-8") from None
