"""The OpenAI-compatible API: ``GET /v1/models``, ``POST /v1/completions``, ``/v1/chat/completions``
(generative models) and ``/v1/embeddings`` (any model with one BYTES input and one FP32 output).

The ``model`` field is the repository's model name. Generation goes through ``DataPlane.generation``
(the version held for the stream), embeddings through ``DataPlane.infer`` (batching, cache, statistics
as for any V2 request). Errors use OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``;
once a stream has started, an error is one such event and the stream ends without ``[DONE]``.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import numpy as np
import orjson

from inferd.dataplane.dataplane import DataPlane
from inferd.dataplane.streaming import Generation
from inferd.errors import InferdError, InvalidRequest, NotFound
from inferd.generative.contract import TokenEvent
from inferd.http.errors import HTTP_STATUS
from inferd.http.generate import parse_body
from inferd.http.openai_requests import (
    GenerationRequest,
    chat_request,
    completion_request,
    embedding_request,
)
from inferd.http.streaming import StreamResponse, primed
from inferd.names import model_name
from inferd.protocol.sampling import sampling_params
from inferd.protocol.sse import DONE, event
from inferd.security.tokens import admit_tokens, metered
from inferd.types import InferRequest, Tensor

log = logging.getLogger(__name__)

# Checks the caller may use ``model`` (its key's scope, its rate limit); the REST app's gate.
Admit = Callable[[str], Awaitable[None]]

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
}


def openai_error(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": None}}


def error_document(status: int, exc: BaseException) -> bytes:
    message = exc.message if isinstance(exc, InferdError) else str(exc)
    return orjson.dumps(openai_error(status, message, getattr(exc, "param", None)))


async def openai_route(
    dp: DataPlane,
    parts: list[str],
    method: str,
    body: bytes,
    admit: Admit,
    caller: str | None,
) -> StreamResponse | dict[str, Any]:
    """``parts``: the path after ``/v1``; ``caller``: the API key id (it scopes cache entries)."""
    if parts == ["models"] and method == "GET":
        return {"object": "list", "data": [_model_card(name) for name in await _served(dp)]}
    if len(parts) == 2 and parts[0] == "models" and method == "GET":
        if parts[1] not in await _served(dp):
            raise NotFound(f"model '{parts[1]}' is not served here")
        return _model_card(parts[1])
    if method == "POST" and parts in (["completions"], ["chat", "completions"], ["embeddings"]):
        document = parse_body(body)
        if parts == ["embeddings"]:
            return await _embeddings(dp, document, admit, caller)
        chat = parts == ["chat", "completions"]
        request = chat_request(document) if chat else completion_request(document)
        await admit(model_name(request.model))
        return await _generate(dp, request, chat)
    raise NotFound(f"no route for {method} /v1/{'/'.join(parts)}")


async def _served(dp: DataPlane) -> list[str]:
    rows = await dp.control.repository_index(ready_only=True)
    return sorted({row["name"] for row in rows})


def _model_card(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "inferd"}


async def _generate(dp: DataPlane, request: GenerationRequest, chat: bool) -> StreamResponse | dict[str, Any]:
    answer = _Answer(request, chat)
    tokens = _tokens(dp, request, answer)
    if request.stream:
        return StreamResponse(answer.stream(await primed(tokens)))
    return await answer.collect(tokens)


async def _tokens(dp: DataPlane, request: GenerationRequest, answer: _Answer) -> AsyncIterator[TokenEvent]:
    account = admit_tokens()  # 429 while the caller's token budget is spent
    async with dp.generation(request.model, None) as held:
        answer.held = held
        generator = held.generator
        params = sampling_params(request.sampling, generator.limits)
        prompt = generator.render_chat(request.messages) if request.messages else request.prompt or ""
        tokens = generator.generate(prompt, params, answer.id)
        if account is not None:
            tokens = metered(account, held.model, held.version, tokens)
        try:
            async for token in tokens:
                yield token
                if token.finish_reason is not None:
                    return
        finally:
            await tokens.aclose()  # type: ignore[attr-defined]


class _Answer:
    """One completion's response documents, streamed (chunks) or whole."""

    def __init__(self, request: GenerationRequest, chat: bool) -> None:
        self.request = request
        self.chat = chat
        self.id = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.held: Generation | None = None

    def _document(self, choices: list[dict[str, Any]], chunk: bool) -> dict[str, Any]:
        kind = "chat.completion" if self.chat else "text_completion"
        return {
            "id": self.id,
            "object": f"{kind}.chunk" if chunk and self.chat else kind,
            "created": self.created,
            "model": self.request.model,
            "choices": choices,
        }

    def _choice(self, text: str, finish: str | None, chunk: bool, first: bool = False) -> dict[str, Any]:
        if not self.chat:
            return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
        if chunk:
            delta: dict[str, Any] = {"role": "assistant", "content": text} if first else {"content": text}
            return {
                "index": 0,
                "delta": delta if text or first else {},
                "finish_reason": finish,
                "logprobs": None,
            }
        message = {"role": "assistant", "content": text}
        return {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}

    @staticmethod
    def _usage(token: TokenEvent) -> dict[str, int]:
        prompt, completion = token.prompt_tokens, token.completion_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def collect(self, tokens: AsyncIterator[TokenEvent]) -> dict[str, Any]:
        parts: list[str] = []
        last: TokenEvent | None = None
        async for token in tokens:
            parts.append(token.text)
            last = token
        finish = last.finish_reason if last is not None else "stop"
        document = self._document([self._choice("".join(parts), finish, chunk=False)], chunk=False)
        document["usage"] = self._usage(last) if last is not None else self._usage(TokenEvent(""))
        return document

    async def stream(self, tokens: AsyncIterator[TokenEvent]) -> AsyncIterator[bytes]:
        first = True
        try:
            async for token in tokens:
                choice = self._choice(token.text, token.finish_reason, chunk=True, first=first)
                first = False
                yield event(self._document([choice], chunk=True))
                if token.finish_reason is not None and self.request.include_usage:
                    usage = self._document([], chunk=True)
                    usage["usage"] = self._usage(token)
                    yield event(usage)
        except InferdError as exc:
            yield event(openai_error(HTTP_STATUS[exc.kind], exc.message))
            return
        except Exception as exc:
            error_id = uuid.uuid4().hex[:12]
            log.error("OpenAI stream failed (error id %s)", error_id, exc_info=exc)
            yield event(openai_error(500, f"internal server error (error id {error_id})"))
            return
        finally:
            await tokens.aclose()  # type: ignore[attr-defined]
        yield DONE


async def _embeddings(
    dp: DataPlane, body: dict[str, Any], admit: Admit, caller: str | None
) -> dict[str, Any]:
    name, texts, encoding = embedding_request(body)
    await admit(model_name(name))
    metadata = dp.control.model_metadata(name)
    inputs, outputs = metadata["inputs"], metadata["outputs"]
    if not (
        len(inputs) == 1
        and inputs[0]["datatype"] == "BYTES"
        and len(outputs) == 1
        and outputs[0]["datatype"] == "FP32"
    ):
        raise InvalidRequest(f"model '{name}' is not an embedding model (one BYTES input, one FP32 output)")
    shape = inputs[0]["shape"]
    if not shape or shape[0] != -1 or any(d not in (-1, 1) for d in shape[1:]):
        raise InvalidRequest(f"model '{name}' does not take a batch of texts (input shape {shape})")
    array = np.empty(len(texts), dtype=object)
    array[:] = [text.encode() for text in texts]
    array = array.reshape((len(texts),) + (1,) * (len(shape) - 1))
    request = InferRequest(name, None, [Tensor(inputs[0]["name"], "BYTES", array)])
    response = await dp.infer(request, None, caller)
    vectors = response.outputs[0].data.reshape(len(texts), -1).astype(np.float32, copy=False)
    data = []
    for index, vector in enumerate(vectors):
        embedding: Any = (
            base64.b64encode(vector.tobytes()).decode() if encoding == "base64" else vector.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    # The embedding models here do not expose their tokenizer: usage is not counted (0).
    return {"object": "list", "data": data, "model": name, "usage": {"prompt_tokens": 0, "total_tokens": 0}}
