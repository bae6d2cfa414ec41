"""The generative scenario's load: streamed requests, each token timed as it arrives.

A request is one server-sent-event stream: Triton's generate extension
(``POST /v2/models/{m}/generate_stream``) or the OpenAI API (``POST /v1/completions`` with
``stream: true``). Both servers send one event per generated token, so the arrival time of each
token event gives the time to first token (from the request's *scheduled* time, as the other
scenarios measure latency) and the gaps between tokens. Load is a closed loop of N streams or
Poisson arrivals fixed before the run; only requests scheduled in the measured window count for
latencies and errors, and only tokens that arrived in it count for throughput.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal

import httptools
import numpy as np

from inferd.bench.endpoint import BenchError, Endpoint
from inferd.bench.load import NO_ANSWER, poisson_schedule

Api = Literal["generate", "openai"]

CONNECT_FAILED = "connect failed"
CONNECTION_LOST = "connection lost"
STREAM_ERROR = "error event"
BAD_EVENT = "bad event"
_MAX_ERROR_SAMPLE = 300
_READ_BYTES = 65536


@dataclass(frozen=True, slots=True)
class GenerativeSpec:
    endpoint: Endpoint
    model: str
    version: str
    api: Api
    prompts: tuple[str, ...]
    max_tokens: int
    temperature: float = 0.0
    mode: Literal["closed", "open"] = "closed"
    concurrency: int = 1
    rate: float = 0.0
    warmup_s: float = 1.0
    duration_s: float = 10.0
    drain_s: float = 30.0
    max_outstanding: int = 1000
    seed: int = 0


@dataclass(slots=True)
class StreamRecord:
    """One streamed request: when it was due, when each token event arrived, how it ended."""

    scheduled: float
    token_times: list[float] = field(default_factory=list)
    error: str | None = None
    finished: bool = False
    # From the usage the server reported with its last event (0 when it sent none).
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.finished and self.error is None


@dataclass(slots=True)
class GenerativeResult:
    window: tuple[float, float]
    records: list[StreamRecord]
    error_samples: dict[str, str]
    generator_cpu_s: float
    generator_wall_s: float


def request_target(spec: GenerativeSpec) -> tuple[str, Any]:
    """The path and the JSON body template (without the prompt) for the spec's API."""
    if spec.api == "openai":
        body: dict[str, Any] = {
            "model": spec.model,
            "max_tokens": spec.max_tokens,
            "temperature": spec.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        return "/v1/completions", body
    path = "/v2/models/" + urllib.parse.quote(spec.model, safe="")
    if spec.version:
        path += "/versions/" + urllib.parse.quote(spec.version, safe="")
    parameters = {"max_tokens": spec.max_tokens, "temperature": spec.temperature}
    return path + "/generate_stream", {"parameters": parameters}


class _Client:
    """Fresh HTTP/1.1 connection per stream (``Connection: close``): a stream lasts far longer than a
    connect, and the server's end of the body then needs no keep-alive bookkeeping."""

    def __init__(self, spec: GenerativeSpec) -> None:
        self._spec = spec
        self._path, self._template = request_target(spec)
        self._ssl = spec.endpoint.tls.ssl_context() if spec.endpoint.tls is not None else None
        self.error_samples: dict[str, str] = {}
        extra = "".join(f"{name}: {value}\r\n" for name, value in spec.endpoint.headers)
        self._head = (
            f"POST {self._path} HTTP/1.1\r\nHost: {spec.endpoint.authority}\r\n"
            f"Content-Type: application/json\r\nAccept: text/event-stream\r\nConnection: close\r\n{extra}"
        )

    def _request(self, prompt: str) -> bytes:
        document = dict(self._template)
        document["prompt" if self._spec.api == "openai" else "text_input"] = prompt
        body = json.dumps(document).encode()
        return (self._head + f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def _fail(self, record: StreamRecord, kind: str, sample: str = "") -> None:
        record.error = kind
        if sample and kind not in self.error_samples:
            self.error_samples[kind] = sample[:_MAX_ERROR_SAMPLE]

    async def stream(self, prompt: str, record: StreamRecord) -> None:
        endpoint = self._spec.endpoint
        try:
            reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port, ssl=self._ssl)
        except ssl.SSLError as exc:
            self._fail(record, "TLS handshake failed", str(exc))
            return
        except OSError as exc:
            self._fail(record, CONNECT_FAILED, str(exc))
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        events = _EventReader(self._spec.api, record)
        parser = httptools.HttpResponseParser(events)
        events.parser = parser
        try:
            writer.write(self._request(prompt))
            while not events.complete:
                data = await reader.read(_READ_BYTES)
                events.arrived = time.perf_counter()  # before parsing: the client's own work is not latency
                if not data:
                    break
                parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(record, "bad HTTP response", str(exc))
        except (OSError, ssl.SSLError) as exc:
            self._fail(record, CONNECTION_LOST, str(exc))
        finally:
            writer.close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await writer.wait_closed()
        status = parser.get_status_code() if events.headers_done else 0
        if record.error is not None:
            return
        if status != 200 and events.headers_done:
            self._fail(record, f"HTTP {status}", bytes(events.buffer).decode(errors="replace"))
        elif events.failure is not None:
            self._fail(record, *events.failure)
        elif not record.finished:
            self._fail(record, CONNECTION_LOST, "the stream ended before its last event")


class _EventReader:
    """httptools callbacks: split the (de-chunked) body into server-sent events and time each token."""

    def __init__(self, api: Api, record: StreamRecord) -> None:
        self._api = api
        self._record = record
        self.buffer = bytearray()
        self.arrived = 0.0
        self.headers_done = False
        self.complete = False
        self.failure: tuple[str, str] | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self._streaming = False

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # An error status's body is one JSON document, kept whole for the error sample.
        self._streaming = self.parser is not None and self.parser.get_status_code() == 200

    def on_status(self, status: bytes) -> None:
        pass

    def on_body(self, body: bytes) -> None:
        self.buffer += body
        if not self._streaming:
            return
        while (end := self.buffer.find(b"\n\n")) >= 0:
            raw = bytes(self.buffer[:end])
            del self.buffer[: end + 2]
            self._event(raw)

    def on_message_complete(self) -> None:
        self.complete = True

    def _event(self, raw: bytes) -> None:
        data = b"".join(
            line[5:].strip() for line in raw.replace(b"\r", b"").split(b"\n") if line.startswith(b"data:")
        )
        if not data or self.failure is not None:
            return
        record = self._record
        if data == b"[DONE]":
            record.finished = self._api == "openai"
            return
        try:
            document = json.loads(data)
        except ValueError:
            self.failure = (BAD_EVENT, data.decode(errors="replace"))
            return
        if not isinstance(document, dict):
            self.failure = (BAD_EVENT, data.decode(errors="replace"))
            return
        if "error" in document:
            self.failure = (STREAM_ERROR, json.dumps(document["error"]))
            return
        usage = document.get("usage")
        if isinstance(usage, dict):
            record.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            record.completion_tokens = int(usage.get("completion_tokens") or 0)
        if self._api == "openai":
            if document.get("choices"):  # the usage chunk has none; every other chunk is one token
                record.token_times.append(self.arrived)
            return
        if "text_output" in document:
            record.token_times.append(self.arrived)
        if document.get("done") is True:
            record.finished = True


class _Prompts:
    """The prompts in a seeded order, cycled."""

    def __init__(self, prompts: tuple[str, ...], seed: int) -> None:
        self._prompts = prompts
        self._order = np.random.default_rng(seed).permutation(len(prompts)).tolist()
        self._next = 0

    def take(self) -> str:
        prompt: str = self._prompts[self._order[self._next % len(self._order)]]
        self._next += 1
        return prompt


async def _closed(client: _Client, spec: GenerativeSpec, records: list[StreamRecord], end: float) -> None:
    prompts = _Prompts(spec.prompts, spec.seed)

    async def worker() -> None:
        while time.perf_counter() < end:
            record = StreamRecord(time.perf_counter())
            records.append(record)
            await client.stream(prompts.take(), record)

    await _drained([asyncio.create_task(worker()) for _ in range(spec.concurrency)], end + spec.drain_s)


async def _open(
    client: _Client, spec: GenerativeSpec, records: list[StreamRecord], origin: float, end: float
) -> None:
    prompts = _Prompts(spec.prompts, spec.seed)
    schedule = (origin + poisson_schedule(spec.rate, end - origin, np.random.default_rng(spec.seed))).tolist()
    tasks: set[asyncio.Task[None]] = set()
    for scheduled in schedule:
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        record = StreamRecord(scheduled)  # late sends keep their lateness in their latency
        records.append(record)
        if len(tasks) >= spec.max_outstanding:
            record.error = "not sent: too many outstanding"
            continue
        task = asyncio.create_task(client.stream(prompts.take(), record))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await _drained(list(tasks), end + spec.drain_s)


async def _drained(tasks: list[asyncio.Task[None]], deadline: float) -> None:
    """Wait for the tasks until ``deadline``; cancel the rest (their records stay unfinished)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.perf_counter()))
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)


async def _run(spec: GenerativeSpec) -> GenerativeResult:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    client = _Client(spec)
    records: list[StreamRecord] = []
    origin = time.perf_counter()
    start, end = origin + spec.warmup_s, origin + spec.warmup_s + spec.duration_s
    if spec.mode == "closed":
        await _closed(client, spec, records, end)
    else:
        await _open(client, spec, records, origin, end)
    for record in records:
        if record.error is None and not record.finished:
            record.error = NO_ANSWER
    return GenerativeResult(
        (start, end),
        records,
        client.error_samples,
        time.process_time() - cpu0,
        time.perf_counter() - wall0,
    )


def run_generative(spec: GenerativeSpec) -> GenerativeResult:
    if spec.mode == "closed" and spec.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    return asyncio.run(_run(spec))


def probe_generative(spec: GenerativeSpec, timeout_s: float = 60.0) -> str | None:
    """Stream one request (the first prompt); None if it came back whole, else why not."""

    async def once() -> str | None:
        client = _Client(spec)
        record = StreamRecord(time.perf_counter())
        try:
            await asyncio.wait_for(client.stream(spec.prompts[0], record), timeout_s)
        except TimeoutError:
            return f"no answer within {timeout_s:g} s"
        if record.error is None:
            return None if record.token_times else "the stream held no token"
        return f"{record.error}: {client.error_samples.get(record.error, '')}".rstrip(": ")

    return asyncio.run(once())


def count_errors(records: list[StreamRecord]) -> dict[str, int]:
    return dict(Counter(r.error for r in records if r.error is not None))


def check_rest(endpoint: Endpoint) -> None:
    if endpoint.protocol != "http":
        raise BenchError("the generative scenario streams over REST (server-sent events): use http(s)://")
