"""Tensors across a process boundary through a shared memory region, never pickled.

A ``Region`` is an anonymous shared file (``memfd``, so nothing is left in /dev/shm when a process
dies, and Docker's 64 MB /dev/shm limit does not apply) mapped by both processes. Its writer grows
it when a batch does not fit and says the new size in the control message; the reader maps it again.
Only a small layout (name, dtype, shape, offset, length per tensor) crosses the control socket.

Numeric tensors are their raw elements; BYTES tensors are length-prefixed elements (a 4-byte
little-endian length, then the bytes), as in the binary extension of the V2 protocol.
"""

from __future__ import annotations

import math
import mmap
import os
import struct
import tempfile

import numpy as np

# (name, numpy dtype string or "BYTES", shape, offset, length in bytes)
Layout = tuple[str, str, tuple[int, ...], int, int]

_BYTES = "BYTES"
_LENGTH = struct.Struct("<I")
_ALIGN = 64
_INITIAL_SIZE = 1 << 20


def new_shared_file() -> int:
    """A file descriptor of an anonymous shared file (pass it to a child with ``pass_fds``)."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("inferd-tensors")
    else:  # not Linux: an unlinked temporary file does the same
        with tempfile.TemporaryFile() as file:
            fd = os.dup(file.fileno())
    os.ftruncate(fd, _INITIAL_SIZE)
    return fd


class Region:
    """One process's mapping of a shared file; ``fd`` is shared, each side maps it itself."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._map = mmap.mmap(fd, os.fstat(fd).st_size)

    @property
    def size(self) -> int:
        return len(self._map)

    def ensure(self, size: int) -> None:
        """Writer: make the file at least ``size`` bytes (doubling), and map it again."""
        if size <= len(self._map):
            return
        os.ftruncate(self.fd, 1 << max(size - 1, 1).bit_length())
        self._remap()

    def follow(self, size: int) -> None:
        """Reader: the writer grew the file to ``size``; map it again."""
        if size > len(self._map):
            self._remap()

    def _remap(self) -> None:
        # The old map is dropped, not closed: arrays a model kept may still view it (it is freed
        # with the last of them).
        self._map = mmap.mmap(self.fd, os.fstat(self.fd).st_size)

    def write(self, tensors: dict[str, np.ndarray]) -> list[Layout]:
        """Copy ``tensors`` into the region (growing it when needed); their layout."""
        encoded: list[tuple[str, np.ndarray | bytes]] = []
        total = 0
        for name, array in tensors.items():
            data: np.ndarray | bytes = _pack_bytes(array) if array.dtype == object else array
            encoded.append((name, data))
            total += _aligned(data.nbytes if isinstance(data, np.ndarray) else len(data))
        self.ensure(total)
        layout: list[Layout] = []
        offset = 0
        buffer = self._map
        for (name, data), array in zip(encoded, tensors.values(), strict=True):
            shape = tuple(int(d) for d in array.shape)
            if isinstance(data, bytes):
                buffer[offset : offset + len(data)] = data
                layout.append((name, _BYTES, shape, offset, len(data)))
                offset += _aligned(len(data))
            else:
                target = np.ndarray(shape, dtype=data.dtype, buffer=buffer, offset=offset)
                target[...] = data
                layout.append((name, data.dtype.str, shape, offset, data.nbytes))
                offset += _aligned(data.nbytes)
        return layout

    def read(self, layout: list[Layout], copy: bool) -> dict[str, np.ndarray]:
        """The tensors ``layout`` describes: read-only views of the region, or copies (``copy``)
        that stay valid after the region is written again."""
        tensors: dict[str, np.ndarray] = {}
        for name, dtype, shape, offset, length in layout:
            if offset < 0 or offset + length > len(self._map):
                raise ValueError(f"tensor '{name}' lies outside the shared region")
            if dtype == _BYTES:
                tensors[name] = _unpack_bytes(memoryview(self._map)[offset : offset + length], shape)
                continue
            array = np.ndarray(shape, dtype=np.dtype(dtype), buffer=self._map, offset=offset)
            if copy:
                array = array.copy()
            else:
                array.flags.writeable = False
            tensors[name] = array
        return tensors

    def close(self) -> None:
        os.close(self.fd)


def _aligned(length: int) -> int:
    return (length + _ALIGN - 1) // _ALIGN * _ALIGN


def _pack_bytes(array: np.ndarray) -> bytes:
    parts: list[bytes] = []
    for element in array.reshape(-1):
        data = element if isinstance(element, bytes) else str(element).encode("utf-8")
        parts.append(_LENGTH.pack(len(data)))
        parts.append(data)
    return b"".join(parts)


def _unpack_bytes(view: memoryview, shape: tuple[int, ...]) -> np.ndarray:
    count = math.prod(shape)
    out = np.empty(count, dtype=object)
    offset = 0
    for i in range(count):
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        out[i] = bytes(view[offset : offset + length])
        offset += length
    if offset != len(view):
        raise ValueError("BYTES tensor data does not match its shape")
    return out.reshape(shape)
