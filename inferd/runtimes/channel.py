"""The control channel between the server and a model's worker process: small framed messages.

A message is a tuple of plain values (names, dtypes, shapes, offsets, sizes, a request's parameters,
error text), encoded with ``marshal``, which handles only such values and so never runs code on
decode. Tensors never travel here: they are in the shared region (inferd/runtimes/shm.py).
"""

from __future__ import annotations

import marshal
import socket
import struct
from typing import Any

_HEADER = struct.Struct("<I")


def send(sock: socket.socket, message: tuple[Any, ...]) -> None:
    payload = marshal.dumps(message)
    sock.sendall(_HEADER.pack(len(payload)) + payload)


def receive(sock: socket.socket) -> tuple[Any, ...] | None:
    """The next message; None when the other side has gone (closed its end or died)."""
    header = _read(sock, _HEADER.size)
    if header is None:
        return None
    (length,) = _HEADER.unpack(header)
    payload = _read(sock, length)
    if payload is None:
        return None
    message = marshal.loads(payload)
    if not isinstance(message, tuple) or not message:
        raise ValueError("malformed control message")
    return message


def _read(sock: socket.socket, length: int) -> bytes | None:
    data = sock.recv(length, socket.MSG_WAITALL)
    if len(data) == length:
        return data
    if not data:
        return None
    chunks = [data]
    received = len(data)
    while received < length:
        chunk = sock.recv(length - received)
        if not chunk:
            return None
        chunks.append(chunk)
        received += len(chunk)
    return b"".join(chunks)
