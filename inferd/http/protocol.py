"""uvicorn's httptools protocol with bounds on what a client can hold before its request reaches the app.

Unbounded, httptools joins a header value arriving in pieces by concatenation (time quadratic in its
length), keeps every header field, and a connection that never finishes its headers is kept forever.
Here (docs/hardening.md#connection-limits):

- the request line and header block are counted as the bytes arrive, before the parser sees them:
  past ``max_header_bytes`` the request gets 431 and the connection closes, so the parser's joins
  stay bounded too;
- past ``max_headers`` fields, 431 likewise (checked as each field completes);
- a header block not complete ``header_timeout_s`` after the connection opened or the previous
  response was sent gets 408 and a close (a plain close when nothing of it arrived);
- a connection beyond ``max_connections`` open on the listener gets 503 and is closed at once.

On a graceful stop, uvicorn closes every idle keep-alive connection at once. A client that has just
read a response may already have its next request on the wire, and would see the connection drop
without an answer. So a connection whose last response ended less than ``drain_grace_s`` ago stays
open that long: a request arriving in time is answered (the data plane refuses it with 503 while
draining) with ``connection: close``; one idle for longer is closed at once, as uvicorn does.

On the hot path this adds a length test per read and per header field and two small calls per
request; the parent's methods are called directly, not through ``super()``, which costs more than
the work it would wrap.

A response with a content-length goes out in one write: uvicorn writes the status line and headers,
then the body, as two writes, so the client is woken twice and, on a loaded machine, the server can be
preempted between them (measured on the floor server: ~15-25 µs of a lone request's p50,
docs/performance.md). Each request's cycle writes through a ``_ResponseWriter`` that holds the head
until the body's first write; streamed (chunked) and HEAD responses are written as before.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

log = logging.getLogger(__name__)

# After a refusal, read and drop what the client still sends for this long before closing: closing
# with unread input makes the kernel send a reset, which can destroy the answer before it is read.
_LINGER_S = 2.0
# Refused connections are logged at most this often: an attack must not flood the log.
_WARN_EVERY_S = 60.0
# On a graceful stop, how long a connection that has just answered stays open for a request the
# client may already have sent (a client in a loop sends within microseconds to milliseconds).
_DRAIN_GRACE_S = 0.5


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    max_header_bytes: int
    max_headers: int
    header_timeout_s: float
    max_connections: int


def bounded_protocol(limits: ConnectionLimits) -> type[BoundedHttpToolsProtocol]:
    """The protocol class to pass as ``uvicorn.Config(http=...)``, holding ``limits``."""

    class Bounded(BoundedHttpToolsProtocol):
        pass

    Bounded.limits = limits
    return Bounded


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    limits: ClassVar[ConnectionLimits]
    drain_grace_s: ClassVar[float] = _DRAIN_GRACE_S
    _last_warning: ClassVar[float] = -_WARN_EVERY_S
    # Slots, not the instance dict: uvicorn's instance already holds 28 attributes, and past 30
    # CPython 3.11 stops sharing the dict's keys, which slows every attribute access (measured:
    # ~1.5-2 µs a request; docs/hardening.md).
    __slots__ = (
        "_draining",
        "_head_left",
        "_head_since",
        "_head_timer",
        "_max_header_bytes",
        "_max_headers",
        "_reading_head",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_header_bytes = self.limits.max_header_bytes
        self._max_headers = self.limits.max_headers
        # Bytes the header block being read may still take; -1 once refused (input is dropped).
        self._head_left = self._max_header_bytes
        self._reading_head = True
        # When the clock of the header block being read started: the connection's start or the
        # previous response's end (read off uvicorn's keep-alive timer, armed then).
        self._head_since = self.loop.time()
        self._head_timer: asyncio.TimerHandle | None = None
        self._draining = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self.transport = transport  # connection_lost closes it
            self._warn(
                "connection limit of %d reached: refusing new connections", self.limits.max_connections
            )
            transport.write(_answer(503, "too many open connections", self.server_state.default_headers))
            transport.close()
            return
        super().connection_made(transport)
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._check_head_time)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if not self._reading_head:  # a body: the app's body limit applies
            _data_received(self, data)
            return
        left = self._head_left
        if left < 0:
            return  # refused: drop what the client still sends until the connection closes
        keep_alive = self.timeout_keep_alive_task
        if keep_alive is not None:  # the first bytes after a response, which armed it
            self._head_since = keep_alive.when() - self.timeout_keep_alive
        if len(data) <= left:
            self._head_left = left - len(data)
            _data_received(self, data)
            return
        # More than the header block may still take: parse that much, the rest only if it ended there
        # (then the rest is body, or the next request, which is counted afresh).
        view = memoryview(data)
        self._head_left = 0
        _data_received(self, view[:left])  # type: ignore[arg-type]  # httptools reads any buffer
        if self.transport.is_closing():
            return
        if self._reading_head and self._head_left == 0:
            limit = self.limits.max_header_bytes
            self._refuse(431, f"the request line and headers exceed {limit} bytes")
            return
        self.data_received(view[left:])  # type: ignore[arg-type]

    def on_header(self, name: bytes, value: bytes) -> None:
        # uvicorn's on_header, plus the count: the list never grows past the limit.
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))
        if len(self.headers) > self._max_headers:
            raise _TooManyHeaders  # stops the parser; uvicorn then calls send_400_response

    def send_400_response(self, msg: str) -> None:
        if self.headers is not None and len(self.headers) > self.limits.max_headers:
            self._refuse(431, f"more than {self.limits.max_headers} header fields")
        else:
            super().send_400_response(msg)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        _on_headers_complete(self)
        cycle = self.cycle
        if cycle is not None and cycle.transport is self.transport:  # None: an upgrade
            cycle.transport = _ResponseWriter(self.transport, cycle)  # type: ignore[assignment]
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # answered with connection: close, then closed

    def shutdown(self) -> None:
        """A graceful stop: finish the request in hand, or give a just-answered client the grace."""
        self._draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            return
        if self._head_left != self._max_header_bytes:
            return  # a request is arriving: answered and closed, or ended by the header timeout
        keep_alive = self.timeout_keep_alive_task
        idle_since = keep_alive.when() - self.timeout_keep_alive if keep_alive else self._head_since
        grace_left = idle_since + self.drain_grace_s - self.loop.time()
        if grace_left <= 0:
            self.transport.close()
        else:
            self.loop.call_later(grace_left, self._close_if_idle)

    def _close_if_idle(self) -> None:
        idle = self.cycle is None or self.cycle.response_complete
        if idle and self._head_left == self._max_header_bytes and not self.transport.is_closing():
            self.transport.close()

    def on_message_complete(self) -> None:
        self._reading_head = True  # the next request's header block starts with the next byte
        self._head_left = self._max_header_bytes
        # uvicorn's on_message_complete, inlined: one call less per request.
        if (self.parser.should_upgrade() and self._should_upgrade()) or self.cycle.response_complete:
            return
        self.cycle.more_body = False
        self.cycle.message_event.set()

    def _check_head_time(self) -> None:
        """One timer per connection, re-armed for the time the current header block has left."""
        self._head_timer = None
        if self.transport.is_closing() or self._head_left < 0:
            return
        timeout = self.limits.header_timeout_s
        busy = not self._reading_head or (self.cycle is not None and not self.cycle.response_complete)
        keep_alive = self.timeout_keep_alive_task
        if keep_alive is not None:  # a response ended and nothing arrived since
            self._head_since = keep_alive.when() - self.timeout_keep_alive
        left = timeout if busy else self._head_since + timeout - self.loop.time()
        if left > 0:
            self._head_timer = self.loop.call_later(left, self._check_head_time)
        elif self._head_left == self.limits.max_header_bytes:
            self.transport.close()  # nothing of a request arrived: an idle connection
        else:
            self._refuse(408, f"the request headers were not complete within {timeout:g} s")

    def _refuse(self, status: int, message: str) -> None:
        """Answer ``status``, stop reading requests on this connection, and close it."""
        self._head_left = -1
        self._reading_head = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # a response is still being sent: no answer can follow it
            return
        self.transport.write(_answer(status, message, self.server_state.default_headers))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(_LINGER_S, self.transport.close)

    @classmethod
    def _warn(cls, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - cls._last_warning >= _WARN_EVERY_S:
            BoundedHttpToolsProtocol._last_warning = now
            log.warning(message, *args)


_data_received = HttpToolsProtocol.data_received
_on_headers_complete = HttpToolsProtocol.on_headers_complete


class _TooManyHeaders(Exception):
    pass


class _ResponseWriter:
    """The transport as one request's cycle sees it: the response head (uvicorn's first write once
    the response has started) is held and written with the body's first write, in one call. Only
    for a content-length response that is not to a HEAD request: its body write follows in the same
    ``send``; a streamed response's head goes out at once, as it did. A cycle that closes without
    writing its body (an app that failed after starting) gets its head written first."""

    __slots__ = ("_cycle", "_head", "_started", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            if len(data) <= _JOIN_MAX:
                self._transport.write(head + data)
            else:  # no copy of a large body; uvloop writes both in one writev
                self._transport.writelines((head, data))
            return
        if not self._started:
            cycle = self._cycle
            if cycle.response_started:  # the head: the 100-continue interim line comes before it
                self._started = True
                if cycle.chunked_encoding is False and cycle.scope["method"] != "HEAD":
                    self._head = data
                    return
        self._transport.write(data)

    def close(self) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head)
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:  # anything else a later uvicorn may use
        return getattr(self._transport, name)


# Bodies up to this size are joined to their head (a copy cheaper than a second write).
_JOIN_MAX = 64 * 1024


def _answer(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = orjson.dumps({"error": message})
    head = [STATUS_LINE[status]]
    for name, value in default_headers:
        head += [name, b": ", value, b"\r\n"]
    head.append(
        b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
    )
    return b"".join(head) + body
