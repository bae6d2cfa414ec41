"""Streamed HTTP answers (server-sent events) for the REST app.

A stream's first item is produced before the status line is sent (``primed``), so a request refused
by the model (bad parameters, a prompt over the context) still gets its error status; once the 200 is
out, errors travel in-band in the protocol's own shape. The client going away cancels the sender and
closes the item iterator, which closes the model's generator (a generative sequence is freed at the
engine's next step).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from inferd.protocol.sse import CONTENT_TYPE

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
T = TypeVar("T")


class StreamResponse:
    """A 200 whose body is ``chunks`` (each sent as it comes, chunked transfer encoding)."""

    __slots__ = ("chunks", "headers", "status")

    def __init__(self, chunks: AsyncIterator[bytes], content_type: bytes = CONTENT_TYPE) -> None:
        self.status = 200
        self.chunks = chunks
        self.headers = [(b"content-type", content_type), (b"cache-control", b"no-cache")]


async def primed(items: AsyncIterator[T]) -> AsyncIterator[T]:
    """``items`` with its first item already awaited: errors raised before it raise here, now."""
    try:
        first = await anext(items)
    except StopAsyncIteration:
        return _empty(items)
    except BaseException:
        with contextlib.suppress(Exception):
            await _aclose(items)
        raise
    return _chain(first, items)


async def _empty(items: AsyncIterator[T]) -> AsyncIterator[T]:
    await _aclose(items)
    return
    yield  # an async generator that yields nothing


async def _chain(first: T, items: AsyncIterator[T]) -> AsyncIterator[T]:
    try:
        yield first
        async for item in items:
            yield item
    finally:
        await _aclose(items)


async def _aclose(items: AsyncIterator[Any]) -> None:
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        await aclose()


async def send_stream(response: StreamResponse, receive: Receive, send: Send) -> bool:
    """Send ``response``; False when the client disconnected before its end (the stream is closed)."""
    await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
    sender = asyncio.current_task()
    disconnected = False

    async def watch() -> None:
        nonlocal disconnected
        # The request body was read whole: the next message is the disconnect.
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        if sender is not None:
            sender.cancel()

    watcher = asyncio.ensure_future(watch())
    try:
        async for chunk in response.chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except asyncio.CancelledError:
        if not disconnected or sender is None:
            raise
        sender.uncancel()
    finally:
        watcher.cancel()
        await _aclose(response.chunks)
    return not disconnected
