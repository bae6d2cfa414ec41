"""Attacks that hold a connection before any request reaches the app (docs/hardening.md#connection-limits).

Raw sockets against a real server on 127.0.0.1: a header sent in pieces past the size limit, too many
header fields, connections that never finish their headers, more connections than the cap. Meanwhile
ordinary clients must keep getting answers.
"""

from __future__ import annotations

import contextlib
import http.client
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
from serverctl import RunningServer, start_server

LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: inferd\r\n"
HEADER_LIMIT = 64 * 1024  # the default of --max-header-bytes
SLOW_TIMEOUT_S = 1.0  # --header-timeout of the slowloris server
CAP = 16  # --max-connections of the capped server


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_until_closed(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    sock.settimeout(timeout)
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0


def _exchange(port: int, request: bytes) -> bytes:
    with _connect(port) as sock:
        sock.sendall(request)
        return _read_until_closed(sock)


class _Bystander:
    """A keep-alive client asking for /v2/health/live in a loop: every answer must be a quick 200."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._stop = threading.Event()
        self.answered = 0
        self.failures: list[str] = []
        self.slowest_s = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Bystander:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", self._port, timeout=10)
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                connection.request("GET", "/v2/health/live")
                response = connection.getresponse()
                response.read()
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(repr(exc))
                connection.close()  # the next request reconnects
                continue
            self.slowest_s = max(self.slowest_s, time.monotonic() - started)
            if response.status != 200:
                self.failures.append(f"status {response.status}")
            self.answered += 1
            time.sleep(0.01)
        connection.close()

    def check(self) -> None:
        assert self.failures == [], self.failures
        assert self.answered > 0
        assert self.slowest_s < 5, f"a plain request took {self.slowest_s:.1f} s during the attack"


def _send_header_in_pieces(port: int, total: int, piece: int) -> tuple[int, bytes]:
    """Send a header value of ``total`` bytes in ``piece``-byte writes, stopping once the server answers.

    Returns the bytes of the value sent and the server's answer.
    """
    with _connect(port) as sock:
        sock.sendall(LIVE + b"X-Big: ")
        sent = 0
        chunk = b"a" * piece
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break  # answered: no need to send the rest
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += piece
        return sent, _read_until_closed(sock)


def test_a_header_sent_in_small_pieces_gets_431_soon_and_others_are_served(server: RunningServer) -> None:
    with _Bystander(server.http_port) as bystander:
        for _ in range(4):
            sent, answer = _send_header_in_pieces(server.http_port, total=2 * 1024 * 1024, piece=512)
            assert _status(answer) == 431, answer[:300]
            assert b"exceed 65536 bytes" in answer
            # Refused after the limit, not after the whole header (what the kernel buffered aside).
            assert sent < 2 * 1024 * 1024
    bystander.check()


def test_the_header_block_limit_is_exact(server: RunningServer) -> None:
    def request_of(size: int) -> bytes:
        head = LIVE + b"Connection: close\r\nX-Pad: "
        return head + b"p" * (size - len(head) - 4) + b"\r\n\r\n"

    assert _status(_exchange(server.http_port, request_of(HEADER_LIMIT))) == 200
    assert _status(_exchange(server.http_port, request_of(HEADER_LIMIT + 1))) == 431


def test_too_many_header_fields_get_431(server: RunningServer) -> None:
    def request_with(fields: int) -> bytes:  # Host and Connection are two of them
        extra = b"".join(b"X-%d: y\r\n" % i for i in range(fields - 2))
        return LIVE + b"Connection: close\r\n" + extra + b"\r\n"

    assert _status(_exchange(server.http_port, request_with(100))) == 200
    answer = _exchange(server.http_port, request_with(101))
    assert _status(answer) == 431
    assert b"more than 100 header fields" in answer
    # Thousands of tiny fields are cut off at the limit too, not collected.
    assert _status(_exchange(server.http_port, request_with(5000))) == 431


@pytest.fixture(scope="module")
def slow_timeout_server(
    tmp_path_factory: pytest.TempPathFactory, repository: Path
) -> Iterator[RunningServer]:
    running = start_server(
        repository, tmp_path_factory.mktemp("slowloris"), "--header-timeout", str(SLOW_TIMEOUT_S)
    )
    yield running
    assert running.stop() == 0, running.log()


def test_connections_that_never_finish_their_headers_are_closed(slow_timeout_server: RunningServer) -> None:
    port = slow_timeout_server.http_port
    started = time.monotonic()
    silent = [_connect(port) for _ in range(20)]
    trickling = [_connect(port) for _ in range(20)]
    grpc_silent = [_connect(slow_timeout_server.grpc_port) for _ in range(5)]
    for sock in trickling:
        sock.sendall(LIVE)
    # A keep-alive client that had a request answered, then stalls in the next one.
    kept_alive = _connect(port)
    kept_alive.sendall(LIVE + b"\r\n")
    assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200")
    kept_alive.sendall(LIVE)
    trickling.append(kept_alive)

    open_ = dict.fromkeys([*silent, *trickling, *grpc_silent], b"")
    closed_after: dict[socket.socket, float] = {}
    deadline = started + 20
    with _Bystander(port) as bystander:
        while open_ and time.monotonic() < deadline:
            for sock in trickling:  # a header line now and then keeps the connection busy, never done
                if sock in open_:
                    with contextlib.suppress(OSError):
                        sock.sendall(b"X-Slow: 1\r\n")
            readable, _, _ = select.select(list(open_), [], [], 0.25)
            for sock in readable:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    chunk = b""
                if chunk:
                    open_[sock] += chunk
                    continue
                closed_after[sock] = time.monotonic() - started
                if sock in trickling:
                    assert _status(open_[sock]) == 408, open_[sock][:300]
                elif sock in silent:
                    assert open_[sock] == b""
                del open_[sock]
    bystander.check()
    for sock in [*silent, *trickling, *grpc_silent]:
        sock.close()
    assert not open_, f"{len(open_)} connections still open 20 s after they started their headers"
    assert min(closed_after.values()) >= SLOW_TIMEOUT_S * 0.9  # not before the timeout


@pytest.fixture(scope="module")
def capped_server(tmp_path_factory: pytest.TempPathFactory, repository: Path) -> Iterator[RunningServer]:
    running = start_server(
        repository,
        tmp_path_factory.mktemp("capped"),
        "--max-connections",
        str(CAP),
        "--header-timeout",
        "60",  # idle connections stay until the test closes them
    )
    yield running
    assert running.stop() == 0, running.log()


def _closed_of(socks: list[socket.socket], expected: int) -> dict[socket.socket, bytes]:
    """The connections the server closed, with what it sent on each first: waits for ``expected``
    of them (10 s at most), then half a second more for any beyond."""
    received = dict.fromkeys(socks, b"")
    closed = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        readable, _, _ = select.select([s for s in socks if s not in closed], [], [], 0.1)
        for sock in readable:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                received[sock] += chunk  # gRPC greets every connection with its SETTINGS
            else:
                closed[sock] = received[sock]
        if len(closed) >= expected:
            deadline = min(deadline, time.monotonic() + 0.5)
    return closed


def test_connections_beyond_the_cap_are_closed_while_established_clients_are_served(
    capped_server: RunningServer,
) -> None:
    port = capped_server.http_port
    established = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    established.request("GET", "/v2/health/live")
    assert established.getresponse().read() == b""
    grpc_client = grpcclient.InferenceServerClient(capped_server.grpc_url)
    assert grpc_client.is_server_live()

    idle = [_connect(port) for _ in range(40)]
    grpc_idle = [_connect(capped_server.grpc_port) for _ in range(40)]
    try:
        refused = _closed_of(idle, expected=40 - (CAP - 1))  # the established client holds one place
        assert len(refused) == 40 - (CAP - 1)
        assert all(answer == b"" or _status(answer) == 503 for answer in refused.values())
        assert len(_closed_of(grpc_idle, expected=40 - (CAP - 1))) == 40 - (CAP - 1)
        for _ in range(5):  # at the cap, the established clients still get answers
            established.request("GET", "/v2/health/live")
            response = established.getresponse()
            response.read()
            assert response.status == 200
            assert grpc_client.is_server_live()
        # Places freed are taken again.
        for sock in idle:
            if sock not in refused:
                sock.close()
        deadline = time.monotonic() + 10
        while _status(_exchange(port, LIVE + b"Connection: close\r\n\r\n")) != 200:
            assert time.monotonic() < deadline, "no new connection accepted after the others closed"
            time.sleep(0.1)
    finally:
        for sock in [*idle, *grpc_idle]:
            sock.close()
        established.close()
        grpc_client.close()
