"""A response with a content-length goes out in one write (inferd/http/protocol.py, _ResponseWriter):
uvicorn writes its head and body separately, which wakes the client twice."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import RequestResponseCycle

from inferd.http.protocol import _ResponseWriter


class _Recording:
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def writelines(self, chunks: Any) -> None:
        self.writes.append(b"".join(chunks))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _cycle(method: str = "POST") -> tuple[RequestResponseCycle, _Recording]:
    transport = _Recording()
    cycle = RequestResponseCycle(
        scope={"method": method, "type": "http"},  # type: ignore[typeddict-item]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=True,
        on_response=lambda: None,
    )
    cycle.transport = _ResponseWriter(transport, cycle)  # type: ignore[assignment]
    return cycle, transport


def _start(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http.response.start", "status": 200, "headers": headers}


@pytest.mark.parametrize("body", [b"", b'{"outputs": []}', b"x" * 200_000])
def test_a_content_length_response_is_one_write(body: bytes) -> None:
    asyncio.run(_content_length_response(body))


async def _content_length_response(body: bytes) -> None:
    cycle, transport = _cycle()
    await cycle.send(_start([(b"content-length", str(len(body)).encode())]))
    assert transport.writes == []
    await cycle.send({"type": "http.response.body", "body": body})
    assert len(transport.writes) == 1
    assert transport.writes[0].startswith(b"HTTP/1.1 200 OK\r\n")
    assert transport.writes[0].endswith(b"\r\n\r\n" + body)


def test_a_streamed_response_sends_its_head_at_once() -> None:
    asyncio.run(_a_streamed_response_sends_its_head_at_once())


async def _a_streamed_response_sends_its_head_at_once() -> None:
    cycle, transport = _cycle()
    await cycle.send(_start([(b"content-type", b"text/event-stream")]))
    assert len(transport.writes) == 1  # the client sees the 200 before the first event
    await cycle.send({"type": "http.response.body", "body": b"data: 1\n\n", "more_body": True})
    assert len(transport.writes) == 2


def test_a_head_response_sends_its_head() -> None:
    asyncio.run(_a_head_response_sends_its_head())


async def _a_head_response_sends_its_head() -> None:
    cycle, transport = _cycle("HEAD")
    await cycle.send(_start([(b"content-length", b"10")]))
    await cycle.send({"type": "http.response.body", "body": b""})
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"content-length: 10\r\n\r\n")


def test_a_closed_response_still_sends_its_head() -> None:
    asyncio.run(_a_closed_response_still_sends_its_head())


async def _a_closed_response_still_sends_its_head() -> None:
    cycle, transport = _cycle()
    await cycle.send(_start([(b"content-length", b"10")]))
    cycle.transport.close()  # what uvicorn does when the app fails after starting its answer
    assert len(transport.writes) == 1 and transport.closed
