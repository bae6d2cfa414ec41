"""The V2 REST API as a raw ASGI application.

A framework router costs tens of microseconds per request, which is the whole latency budget for a
small model here (see docs/performance.md), so routing is a split of the path and one table lookup.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from inferd.dataplane.dataplane import DataPlane
from inferd.errors import (
    InferdError,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthenticated,
)
from inferd.http import access
from inferd.http.errors import HTTP_STATUS
from inferd.http.generate import generate
from inferd.http.openai import error_document, openai_route
from inferd.http.pages import Page, render
from inferd.http.repository import repository_route
from inferd.http.settings import logging_route, trace_route
from inferd.http.sharedmem import cuda_route, system_route
from inferd.http.streaming import StreamResponse, send_stream
from inferd.names import model_name, model_version
from inferd.protocol.json_codec import decode_request, dumps, encode_error, encode_response
from inferd.protocol.model_config import config_json
from inferd.security import tokens
from inferd.security.apis import Api
from inferd.security.gate import Access, Gate, refused_key_id
from inferd.sharedmem import SharedMemoryAccess
from inferd.tracing.carrier import carrier_from_headers
from inferd.types import Admission, InferRequest, InferResponse

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_OCTET = (b"content-type", b"application/octet-stream")
_HEADER_LENGTH = b"inference-header-content-length"
_ROUTING_KEY = b"inferd-routing-key"  # sticky canary routing, see docs/lifecycle.md
# A request still unanswered after this long starts listening for its client's disconnect; faster
# ones never pay for the listener (docs/hardening.md). A started listener costs ~18 µs (a task, a
# wait, a cancellation: as much as decoding the request), so it is kept for requests that wait long
# enough for dropping them to matter; at 2 ms every request under load paid it (docs/performance.md).
_WATCH_AFTER_S = 0.05
# nginx's "client closed request": only the audit log and access log ever see it.
_CLIENT_CLOSED = 499


class _DisconnectWatch:
    """Cancels the request's task when its client disconnects before the answer is ready, so a
    queued request leaves its model's queue unexecuted instead of running for nobody."""

    __slots__ = ("_receive", "_task", "_timer", "_watcher", "disconnected")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task = asyncio.current_task()
        self._watcher: asyncio.Task[None] | None = None
        self.disconnected = False
        self._timer = asyncio.get_running_loop().call_later(_WATCH_AFTER_S, self._start)

    def _start(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        # The body was read whole: the server's next message is the disconnect (uvicorn wakes
        # receive() when the connection is lost).
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self.disconnected = True
        if self._task is not None:
            self._task.cancel()

    def stop(self) -> None:
        self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or [_JSON]


def _json(document: Any, status: int = 200) -> Response:
    return Response(status, dumps(document))


def _empty(ok: bool) -> Response:
    return Response(200 if ok else 503, b"" if ok else encode_error("not ready"))


def _error_response(exc: Exception, scope: Scope) -> Response:
    openai = scope["path"].startswith("/v1/")  # OpenAI's clients read their own error shape
    if isinstance(exc, InferdError):
        status = HTTP_STATUS[exc.kind]
        response = Response(status, error_document(status, exc) if openai else encode_error(exc.message))
        if isinstance(exc, Unauthenticated):
            response.headers = [_JSON, (b"www-authenticate", b'Bearer realm="inferd"')]
        elif isinstance(exc, RateLimited):
            response.headers = [_JSON, (b"retry-after", str(exc.retry_after_s).encode())]
            if openai:
                response.headers += _token_headers()
        return response
    request_id = uuid.uuid4().hex[:12]
    log.error(
        "unexpected error handling %s %s (error id %s)",
        scope["method"],
        scope["path"],
        request_id,
        exc_info=exc,
    )
    message = f"internal server error (error id {request_id})"
    return Response(500, error_document(500, Exception(message)) if openai else encode_error(message))


def _token_headers() -> list[tuple[bytes, bytes]]:
    account = tokens.current_account()
    return account.headers() if account is not None else []


class RestApp:
    def __init__(
        self,
        dataplane: DataPlane,
        max_body_bytes: int,
        pages: Mapping[str, Page] | None = None,
        gate: Gate | None = None,
    ) -> None:
        self._dataplane = dataplane
        self._max_body_bytes = max_body_bytes
        self._pages = dict(pages or {})
        # None when auth, rate limits and audit are all off: then requests skip them at no cost.
        self._gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is handled by app.py, websockets are not served
        response: Response | StreamResponse
        if self._gate is not None:
            response = await self._gated(self._gate, scope, receive)
        else:
            try:
                response = await self._route(scope, receive)
            except Exception as exc:
                response = _error_response(exc, scope)
        if isinstance(response, StreamResponse):
            await send_stream(response, receive, send)
            return
        headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _gated(self, gate: Gate, scope: Scope, receive: Receive) -> Response | StreamResponse:
        """Authenticate, authorize and rate-limit before routing; audit the outcome."""
        wanted = access.classify(scope["method"], scope["path"])
        client = access.client_address(scope)
        key_id = None
        response: Response | StreamResponse
        try:
            principal = await gate.admit(access.credential(scope["headers"]), wanted, client)
            key_id = principal.id if principal is not None else None
            if wanted.api is Api.INFERENCE:  # what generative routes charge tokens to (security/tokens.py)
                call = f"{scope['method']} {scope['path']}"
                tokens.ACCOUNT.set(functools.partial(gate.token_account, principal, client, "http", call))
            response = await self._route(scope, receive, key_id)
        except Exception as exc:
            key_id = key_id or refused_key_id(exc)
            response = _error_response(exc, scope)
        if gate.audit is not None:
            call = f"{scope['method']} {scope['path']}"
            gate.record("http", key_id, client, wanted, call, response.status)
        return response

    async def _route(
        self, scope: Scope, receive: Receive, caller: str | None = None
    ) -> Response | StreamResponse:
        """``caller``: the id of the API key that was presented (None without API keys)."""
        parts = scope["path"].strip("/").split("/")
        method = scope["method"]
        if parts[0] == "v1":
            body = await _read_body(receive, scope, self._max_body_bytes) if method == "POST" else b""
            admit = functools.partial(self._admit_model, scope)
            answer = openai_route(self._dataplane, parts[1:], method, body, admit, caller)
            response = await _watched(answer, receive)
            response.headers = [*response.headers, *_token_headers()]  # as OpenAI sends them
            return response
        if not parts or parts[0] != "v2":
            page = self._pages.get(scope["path"])
            if page is None or method != "GET":
                raise NotFound(f"no route for {method} {scope['path']}")
            content_type, body = await render(page)
            return Response(200, body, [(b"content-type", content_type)])
        rest = parts[1:]
        dp = self._dataplane
        if not rest:
            return _json(dp.server_metadata()) if method == "GET" else _not_allowed(method, scope)
        head = rest[0]
        if head == "health" and len(rest) == 2 and method == "GET":
            if rest[1] == "live":
                return _empty(dp.live())
            if rest[1] == "ready":
                return _empty(await dp.server_ready())
        elif head == "models":
            return await self._models(rest[1:], method, scope, receive, caller)
        elif head == "repository":
            body = await _read_body(receive, scope, self._max_body_bytes)
            return _json(await repository_route(dp.control, rest[1:], method, body))
        elif head == "systemsharedmemory" and len(rest) > 1:
            body = await _read_body(receive, scope, self._max_body_bytes)
            return _json(system_route(dp.regions, rest[1:], method, scope["path"], body, caller))
        elif head == "logging" and len(rest) == 1:
            return _json(logging_route(method, await _read_body(receive, scope, self._max_body_bytes)))
        elif rest == ["trace", "setting"]:
            body = await _read_body(receive, scope, self._max_body_bytes)
            return _json(trace_route(dp, None, method, body))
        elif head == "cudasharedmemory" and len(rest) > 1:
            return _json(cuda_route(rest[1:], method, scope["path"]))
        raise NotFound(f"no route for {method} {scope['path']}")

    async def _admit_model(self, scope: Scope, model: str) -> None:
        """A route naming its model in the body (OpenAI's): the key's scope and the rate limit for it."""
        if self._gate is not None:
            credential = access.credential(scope["headers"])
            await self._gate.admit(credential, Access(Api.INFERENCE, model), access.client_address(scope))

    async def _models(
        self, rest: list[str], method: str, scope: Scope, receive: Receive, caller: str | None
    ) -> Response | StreamResponse:
        dp = self._dataplane
        if rest == ["stats"] and method == "GET":
            return _json({"model_stats": await dp.control.statistics()})
        if not rest or not rest[0]:
            raise NotFound(f"no route for {method} {scope['path']}")
        raw_name, raw_version, action = access.split_model_path(rest)
        name, version = model_name(raw_name), model_version(raw_version)
        if action == ["infer"]:
            if method != "POST":
                return _not_allowed(method, scope)
            return await self._infer(name, version, scope, receive, caller)
        if action == ["trace", "setting"]:
            body = await _read_body(receive, scope, self._max_body_bytes)
            return _json(trace_route(dp, name, method, body))
        if action == ["generate"] or action == ["generate_stream"]:
            if method != "POST":
                return _not_allowed(method, scope)
            body = await _read_body(receive, scope, self._max_body_bytes)
            stream = action[0] == "generate_stream"
            return await _watched(generate(self._dataplane, name, version, body, stream), receive)
        if method != "GET":
            return _not_allowed(method, scope)
        if not action:
            return _json(dp.control.model_metadata(name, version))
        if action == ["ready"]:
            return _empty(dp.control.model_ready(name, version))
        if action == ["config"]:
            return _json(config_json(dp.control.model_config(name, version)))
        if action == ["stats"]:
            return _json({"model_stats": await dp.control.statistics(name, version)})
        raise NotFound(f"no route for {method} {scope['path']}")

    async def _infer(
        self, name: str, version: str | None, scope: Scope, receive: Receive, caller: str | None
    ) -> Response:
        # Refused here (unknown model, or shed while the event loop lags) before the body is read or
        # a disconnect watch armed: a refusal under overload should cost the loop as little as can be.
        # The data plane is handed the outcome rather than checking again: the version that answers
        # validates the decoded request again (after a swap while the body was read, the version
        # that served when it arrived checked its declared inputs, the new one validates it).
        admission = self._dataplane.check_servable(name, version)
        json_length = None
        routing_key = None
        for key, value in scope["headers"]:
            if key == _HEADER_LENGTH:
                json_length = _header_length(value)
            elif key == _ROUTING_KEY:
                routing_key = value.decode("latin-1")
        body = await _read_body(receive, scope, self._max_body_bytes)
        regions = self._dataplane.regions
        shm = regions.access(caller) if len(regions) else None  # none registered: refused if named
        call = _RestCall(name, version, caller, scope["headers"], body, json_length, routing_key, shm)
        watch = _DisconnectWatch(receive)
        try:
            return await self._dataplane.serve(call, admission)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if not watch.disconnected or task is None:
                raise
            task.uncancel()
            return Response(_CLIENT_CLOSED, encode_error("the client closed the connection"))
        finally:
            watch.stop()


async def _watched(
    answer: Awaitable[StreamResponse | dict[str, Any]], receive: Receive
) -> Response | StreamResponse:
    """A generation's answer (the whole text, or a stream's first item), abandoned if its client
    disconnects meanwhile: the generator is closed rather than left running for nobody."""
    watch = _DisconnectWatch(receive)
    try:
        result = await answer
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if not watch.disconnected or task is None:
            raise
        task.uncancel()
        return Response(_CLIENT_CLOSED, encode_error("the client closed the connection"))
    finally:
        watch.stop()  # a stream's sender then watches for the disconnect itself (http/streaming.py)
    return result if isinstance(result, StreamResponse) else _json(result)


class _RestCall:
    """One REST inference call for ``DataPlane.serve``: the V2 JSON (+ binary extension) codec."""

    __slots__ = ("_body", "_headers", "_json_length", "_routing_key", "_shm", "caller", "model", "version")
    protocol = "http"

    def __init__(
        self,
        model: str,
        version: str | None,
        caller: str | None,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        json_length: int | None,
        routing_key: str | None,
        shm: SharedMemoryAccess | None,
    ) -> None:
        self.model = model
        self.version = version
        self.caller = caller
        self._headers = headers
        self._body = body
        self._json_length = json_length
        self._routing_key = routing_key
        self._shm = shm

    def decode(self, admission: Admission | None) -> InferRequest:
        request = decode_request(
            self._body, self._json_length, self.model, self.version, admission, self._shm
        )
        if self._routing_key is not None:
            request.parameters["routing_key"] = self._routing_key
        return request

    def encode(self, request: InferRequest, response: InferResponse) -> Response:
        payload, header_length = encode_response(request, response, self._shm)
        if header_length is None:
            return Response(200, payload)
        return Response(
            200, payload, [_OCTET, (b"inference-header-content-length", str(header_length).encode())]
        )

    def carrier(self) -> dict[str, str]:
        return carrier_from_headers(self._headers)


def _header_length(value: bytes) -> int:
    # Digits only: int() would also take "1_0", "+10", " 10 ", which a proxy may read otherwise.
    if not (value.isdigit() and len(value) <= 19):  # bytes.isdigit() is ASCII only
        raise InvalidRequest("Inference-Header-Content-Length must be a decimal number of bytes")
    return int(value)


def _not_allowed(method: str, scope: Scope) -> Response:
    return Response(405, encode_error(f"method {method} is not allowed on {scope['path']}"))


async def _read_body(receive: Receive, scope: Scope, limit: int) -> bytes:
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"request body of {int(value)} bytes exceeds the limit of {limit} bytes")
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    size = len(body)
    while message.get("more_body", False):
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
