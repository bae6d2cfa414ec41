"""Lean asynchronous inference clients: fire a pre-encoded request, call back with its outcome.

They use callbacks rather than a task per request so that one generator core can keep a fast server
busy: the HTTP client is a keep-alive HTTP/1.1 connection pool on asyncio protocols with httptools'
C parser (one connection per request in flight, as HTTP/1.1 requires); gRPC uses grpc.aio over one
HTTP/2 channel with the request serialized once and the reply left unparsed.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

import httptools

from inferd.bench.credentials import describe_tls_error, grpc_metadata
from inferd.bench.endpoint import Endpoint
from inferd.bench.payloads import RestPayload

# Called once per request with its outcome (None on success, else a short error kind such as "HTTP 503"
# or "UNAVAILABLE") and the perf_counter() time its answer arrived: taken as the bytes come in, before
# parsing and before other answers that came in the same wake-up are handled, so the client's own
# processing does not count as server latency.
OnDone = Callable[[str | None, float], None]

_MAX_ERROR_SAMPLE = 300
TLS_FAILED = "TLS handshake failed"
# A new connection could not be made (the server is not listening); load.py stops a run on a streak.
CONNECT_FAILED = "connect failed"
# An open connection closed before its answer came.
CONNECTION_LOST = "connection lost"


class Submitter(Protocol):
    # First server message seen per error kind, to show the user why requests failed.
    error_samples: dict[str, str]

    async def open(self) -> None: ...

    def submit(self, on_done: OnDone) -> None:
        """Send one request now; ``on_done`` runs later on the event loop, never inside this call."""

    async def close(self) -> None: ...


def infer_path(model: str, version: str) -> str:
    from urllib.parse import quote

    path = "/v2/models/" + quote(model, safe="")
    if version:
        path += "/versions/" + quote(version, safe="")
    return path + "/infer"


class _HttpConnection(asyncio.Protocol):
    def __init__(self, pool: HttpSubmitter) -> None:
        self._pool = pool
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._on_done: OnDone | None = None
        self._error_body: list[bytes] | None = None
        self._arrived = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport; they have the same methods.
        self._transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # small requests must not wait for Nagle's algorithm
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, request: bytes, on_done: OnDone) -> None:
        assert self._transport is not None
        self._on_done = on_done
        self._transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._arrived = time.perf_counter()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish(f"bad HTTP response: {exc}", keep=False)

    def on_headers_complete(self) -> None:
        self._error_body = None if self._parser.get_status_code() == 200 else []

    def on_body(self, body: bytes) -> None:
        if self._error_body is not None:
            self._error_body.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if status == 200:
            self._finish(None, keep=self._parser.should_keep_alive())
            return
        kind = f"HTTP {status}"
        if kind not in self._pool.error_samples and self._error_body is not None:
            text = b"".join(self._error_body).decode(errors="replace")
            self._pool.error_samples[kind] = text[:_MAX_ERROR_SAMPLE]
        self._finish(kind, keep=self._parser.should_keep_alive())

    def connection_lost(self, exc: Exception | None) -> None:
        self._pool.forget(self)
        if self._on_done is not None:
            self._arrived = time.perf_counter()
            # TLS 1.3 servers check a client certificate after the client's side of the handshake:
            # a refusal arrives as an alert on the first read.
            if isinstance(exc, ssl.SSLError):
                self._pool.note_tls_failure(exc)
                self._finish(TLS_FAILED, keep=False)
            else:
                self._finish(CONNECTION_LOST, keep=False)

    def _finish(self, kind: str | None, keep: bool) -> None:
        on_done, self._on_done = self._on_done, None
        if keep:
            self._pool.release(self)
        elif self._transport is not None:
            self._transport.close()
        if on_done is not None:
            on_done(kind, self._arrived)


class HttpSubmitter:
    """V2 REST infer over a pool of keep-alive HTTP/1.1 connections that grows to the concurrency."""

    def __init__(self, endpoint: Endpoint, model: str, version: str, payload: RestPayload) -> None:
        self._endpoint = endpoint
        content_type = b"application/json" if payload.json_length is None else b"application/octet-stream"
        head = [
            b"POST " + infer_path(model, version).encode() + b" HTTP/1.1",
            b"Host: " + endpoint.authority.encode(),
            b"Content-Type: " + content_type,
            b"Content-Length: " + str(len(payload.body)).encode(),
        ]
        if payload.json_length is not None:
            head.append(b"Inference-Header-Content-Length: " + str(payload.json_length).encode())
        # Checked by credentials.parse_header: one line of printable text, no framing headers.
        head.extend(f"{name}: {value}".encode("latin-1") for name, value in endpoint.headers)
        self._request = b"\r\n".join(head) + b"\r\n\r\n" + payload.body
        self._idle: list[_HttpConnection] = []
        self._all: set[_HttpConnection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ssl: ssl.SSLContext | None = None
        self.error_samples: dict[str, str] = {}

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._endpoint.tls is not None:  # built here: SSL contexts do not cross processes
            self._ssl = self._endpoint.tls.ssl_context()

    def submit(self, on_done: OnDone) -> None:
        if self._idle:
            self._idle.pop().send(self._request, on_done)
            return
        assert self._loop is not None
        self._loop.create_task(self._connect_and_send(on_done))

    async def _connect_and_send(self, on_done: OnDone) -> None:
        assert self._loop is not None
        try:
            _, connection = await self._loop.create_connection(
                lambda: _HttpConnection(self), self._endpoint.host, self._endpoint.port, ssl=self._ssl
            )
        except ssl.SSLError as exc:
            self.note_tls_failure(exc)
            on_done(TLS_FAILED, time.perf_counter())
            return
        except OSError as exc:
            self.error_samples.setdefault(CONNECT_FAILED, str(exc)[:_MAX_ERROR_SAMPLE])
            on_done(CONNECT_FAILED, time.perf_counter())
            return
        self._all.add(connection)
        connection.send(self._request, on_done)

    def note_tls_failure(self, exc: ssl.SSLError) -> None:
        self.error_samples.setdefault(TLS_FAILED, describe_tls_error(exc)[:_MAX_ERROR_SAMPLE])

    def release(self, connection: _HttpConnection) -> None:
        self._idle.append(connection)

    def forget(self, connection: _HttpConnection) -> None:
        self._all.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)

    async def close(self) -> None:
        for connection in list(self._all):
            if connection._transport is not None:
                connection._transport.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let connection_lost callbacks run before the loop closes


class GrpcSubmitter:
    """V2 gRPC ModelInfer over one grpc.aio channel; the request is serialized once."""

    def __init__(self, endpoint: Endpoint, request: bytes, max_message_bytes: int = 64 << 20) -> None:
        self._endpoint = endpoint
        self._request = request
        self._max_message_bytes = max_message_bytes
        self._metadata = grpc_metadata(endpoint.headers)
        self._channel: Any = None
        self._method: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.error_samples: dict[str, str] = {}

    async def open(self) -> None:
        import grpc

        self._loop = asyncio.get_running_loop()
        options = [
            ("grpc.max_send_message_length", self._max_message_bytes),
            ("grpc.max_receive_message_length", self._max_message_bytes),
        ]
        tls = self._endpoint.tls
        if tls is None:
            self._channel = grpc.aio.insecure_channel(self._endpoint.authority, options=options)
        else:
            credentials = tls.grpc_credentials()
            self._channel = grpc.aio.secure_channel(self._endpoint.authority, credentials, options=options)
        # No serializers: bytes go out as they are and replies come back unparsed.
        self._method = self._channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")

    def submit(self, on_done: OnDone) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._call(on_done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _call(self, on_done: OnDone) -> None:
        import grpc

        try:
            await self._method(self._request, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            kind = exc.code().name
            # UNAVAILABLE while the channel cannot connect: the server is not listening (a server that
            # answers UNAVAILABLE itself, e.g. while draining, leaves the channel READY).
            failure = grpc.ChannelConnectivity.TRANSIENT_FAILURE
            if exc.code() == grpc.StatusCode.UNAVAILABLE and self._channel.get_state() == failure:
                kind = CONNECT_FAILED
            self.error_samples.setdefault(kind, (exc.details() or "")[:_MAX_ERROR_SAMPLE])
            on_done(kind, time.perf_counter())
        else:
            on_done(None, time.perf_counter())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._channel is not None:
            await self._channel.close()
