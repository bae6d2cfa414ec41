"""A small real HTTP/1.1 server for the load generator's tests: it answers every POST with 200 and
can stall (hold every answer until a moment) or serve one request at a time with a fixed service time.

It runs its own event loop in a thread and listens on 127.0.0.1 with a port it picked itself.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Behaviour:
    # After this many requests, hold every answer until ``stall_s`` seconds after that request came.
    stall_after: int | None = None
    stall_s: float = 0.0
    # Serve requests one at a time, each taking this long (a server of fixed capacity).
    service_s: float = 0.0
    # Answer every n-th request 503 with a V2 error body.
    fail_every: int = 0
    # Hold every n-th request this long (a hiccup whatever the load: latency that does not follow it).
    slow_every: int = 0
    slow_s: float = 0.0
    received: int = 0
    stalled_until: float = 0.0
    lock: asyncio.Lock | None = field(default=None)


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, behaviour: Behaviour) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            behaviour.received += 1
            now = time.monotonic()
            if behaviour.stall_after is not None and behaviour.received == behaviour.stall_after:
                behaviour.stalled_until = now + behaviour.stall_s
            if behaviour.stalled_until > now:
                await asyncio.sleep(behaviour.stalled_until - now)
            if behaviour.slow_every and behaviour.received % behaviour.slow_every == 0:
                await asyncio.sleep(behaviour.slow_s)
            if behaviour.service_s:
                assert behaviour.lock is not None
                async with behaviour.lock:
                    await asyncio.sleep(behaviour.service_s)
            if behaviour.fail_every and behaviour.received % behaviour.fail_every == 0:
                body = b'{"error":"model is overloaded"}'
                writer.write(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
            else:
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
                )
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@contextmanager
def synthetic_server(behaviour: Behaviour) -> Iterator[int]:
    """Serve in a background thread; yields the port. Stops (and closes every connection) on exit."""
    loop = asyncio.new_event_loop()
    started = threading.Event()
    port: list[int] = []
    stop: list[asyncio.Event] = []

    async def main() -> None:
        behaviour.lock = asyncio.Lock()
        handlers: set[asyncio.Task[None]] = set()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await _handle(reader, writer, behaviour)
            finally:
                handlers.discard(task)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port.append(server.sockets[0].getsockname()[1])
        stop.append(asyncio.Event())
        started.set()
        async with server:
            await stop[0].wait()
            # Stalled handlers would otherwise outlive the loop.
            for task in list(handlers):
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not started.wait(timeout=30):
        raise AssertionError("synthetic server did not start")
    try:
        yield port[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(timeout=30)
        loop.close()
