"""The V2 REST API as a raw ASGI application.

A framework router costs tens of microseconds per request, which is the whole latency budget for a
small model here (see docs/performance.md), so routing is a split of the path and one table lookup.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

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
from inferd.http.pages import Page
from inferd.http.repository import repository_route
from inferd.protocol.json_codec import decode_request, dumps, encode_error, encode_response
from inferd.security.gate import Gate, refused_key_id
from inferd.tracing.carrier import carrier_from_headers

if TYPE_CHECKING:  # OpenTelemetry is an optional extra: imported only when tracing is on
    from inferd.tracing.tracer import RequestSpan, Tracing

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON = (b"content-type", b"application/json")
_OCTET = (b"content-type", b"application/octet-stream")
_HEADER_LENGTH = b"inference-header-content-length"
_ROUTING_KEY = b"inferd-routing-key"  # sticky canary routing, see docs/lifecycle.md


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
    if isinstance(exc, InferdError):
        response = Response(HTTP_STATUS[exc.kind], encode_error(exc.message))
        if isinstance(exc, Unauthenticated):
            response.headers = [_JSON, (b"www-authenticate", b'Bearer realm="inferd"')]
        elif isinstance(exc, RateLimited):
            response.headers = [_JSON, (b"retry-after", str(exc.retry_after_s).encode())]
        return response
    request_id = uuid.uuid4().hex[:12]
    log.error(
        "unexpected error handling %s %s (error id %s)",
        scope["method"],
        scope["path"],
        request_id,
        exc_info=exc,
    )
    return Response(500, encode_error(f"internal server error (error id {request_id})"))


class RestApp:
    def __init__(
        self,
        dataplane: DataPlane,
        max_body_bytes: int,
        pages: Mapping[str, Page] | None = None,
        tracing: Tracing | None = None,
        gate: Gate | None = None,
    ) -> None:
        self._dataplane = dataplane
        self._max_body_bytes = max_body_bytes
        self._pages = dict(pages or {})
        self._tracing = tracing
        # None when auth, rate limits and audit are all off: then requests skip them at no cost.
        self._gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is handled by app.py, websockets are not served
        if self._gate is not None:
            response = await self._gated(self._gate, scope, receive)
        else:
            try:
                response = await self._route(scope, receive)
            except Exception as exc:
                response = _error_response(exc, scope)
        headers = [*response.headers, (b"content-length", str(len(response.body)).encode())]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _gated(self, gate: Gate, scope: Scope, receive: Receive) -> Response:
        """Authenticate, authorize and rate-limit before routing; audit the outcome."""
        wanted = access.classify(scope["method"], scope["path"])
        client = access.client_address(scope)
        key_id = None
        try:
            principal = await gate.admit(access.credential(scope["headers"]), wanted, client)
            key_id = principal.id if principal is not None else None
            response = await self._route(scope, receive)
        except Exception as exc:
            key_id = key_id or refused_key_id(exc)
            response = _error_response(exc, scope)
        if gate.audit is not None:
            call = f"{scope['method']} {scope['path']}"
            gate.record("http", key_id, client, wanted, call, response.status)
        return response

    async def _route(self, scope: Scope, receive: Receive) -> Response:
        parts = scope["path"].strip("/").split("/")
        method = scope["method"]
        if not parts or parts[0] != "v2":
            page = self._pages.get(scope["path"])
            if page is None or method != "GET":
                raise NotFound(f"no route for {method} {scope['path']}")
            content_type, body = page()
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
                return _empty(dp.ready())
        elif head == "models":
            return await self._models(rest[1:], method, scope, receive)
        elif head == "repository":
            body = await _read_body(receive, scope, self._max_body_bytes)
            return _json(await repository_route(dp, rest[1:], method, body))
        raise NotFound(f"no route for {method} {scope['path']}")

    async def _models(self, rest: list[str], method: str, scope: Scope, receive: Receive) -> Response:
        dp = self._dataplane
        if rest == ["stats"] and method == "GET":
            return _json({"model_stats": dp.model_statistics()})
        if not rest or not rest[0]:
            raise NotFound(f"no route for {method} {scope['path']}")
        name, version, action = access.split_model_path(rest)
        if action == ["infer"]:
            if method != "POST":
                return _not_allowed(method, scope)
            if self._tracing is not None:
                return await self._infer_traced(self._tracing, name, version, scope, receive)
            return await self._infer(name, version, scope, receive)
        if method != "GET":
            return _not_allowed(method, scope)
        if not action:
            return _json(dp.model_metadata(name, version))
        if action == ["ready"]:
            return _empty(dp.model_ready(name, version))
        if action == ["config"]:
            return _json(dp.model_config(name, version))
        if action == ["stats"]:
            return _json({"model_stats": dp.model_statistics(name, version)})
        raise NotFound(f"no route for {method} {scope['path']}")

    async def _infer_traced(
        self, tracing: Tracing, name: str, version: str | None, scope: Scope, receive: Receive
    ) -> Response:
        span = tracing.start_request("http", name, version, carrier_from_headers(scope["headers"]))
        try:
            response = await self._infer(name, version, scope, receive, span)
        except BaseException as exc:
            span.end(exc)
            raise
        span.end()
        return response

    async def _infer(
        self, name: str, version: str | None, scope: Scope, receive: Receive, span: RequestSpan | None = None
    ) -> Response:
        json_length = None
        routing_key = None
        for key, value in scope["headers"]:
            if key == _HEADER_LENGTH:
                try:
                    json_length = int(value)
                except ValueError:
                    raise InvalidRequest("Inference-Header-Content-Length must be an integer") from None
            elif key == _ROUTING_KEY:
                routing_key = value.decode("latin-1")
        body = await _read_body(receive, scope, self._max_body_bytes)
        admission = self._dataplane.check_servable(name, version)
        try:
            request = decode_request(body, json_length, name, version, admission)
        except InferdError as exc:
            self._dataplane.record_rejected(name, version, exc)
            raise
        if routing_key is not None:
            request.parameters["routing_key"] = routing_key
        if span is None:
            response = await self._dataplane.infer(request)
            payload, header_length = encode_response(request, response)
        else:
            span.set_request_id(request.id)
            response = await self._dataplane.infer(request, span)
            with span.encoding():
                payload, header_length = encode_response(request, response)
        if header_length is None:
            return Response(200, payload)
        return Response(
            200, payload, [_OCTET, (b"inference-header-content-length", str(header_length).encode())]
        )


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
