"""Tensor element encodings shared by the REST binary extension and gRPC raw contents."""

from __future__ import annotations

import math
import struct

import numpy as np

from inferd.datatypes import DATATYPES, numpy_dtype
from inferd.errors import InvalidRequest

_LENGTH = struct.Struct("<I")
# The wire's byte order for each fixed-size datatype, built once rather than per tensor.
_LITTLE_ENDIAN = {
    datatype: numpy_dtype(datatype).newbyteorder("<") for datatype in DATATYPES if datatype != "BYTES"
}

# Bounds no real tensor comes near, so that numpy never sees a shape it cannot represent: numpy
# refuses more than 64 dimensions, and a zero-sized shape like [0, 2**62, 2**62] still overflows.
MAX_DIMS = 32
MAX_NONZERO_PRODUCT = 2**48


def check_rank(name: str, rank: int) -> None:
    """Refuse a shape by its length alone, before a codec copies or walks its dimensions."""
    if rank > MAX_DIMS:
        raise InvalidRequest(f"input '{name}': shape has {rank} dimensions, more than {MAX_DIMS}")


def check_shape(name: str, shape: object) -> tuple[int, ...]:
    if not isinstance(shape, list | tuple):
        raise InvalidRequest(f"input '{name}': shape must be a list of non-negative integers, got {shape!r}")
    check_rank(name, len(shape))
    for d in shape:  # a loop, not all(<generator>): this runs per input per request
        if type(d) is not int or d < 0:  # exactly int: bool and int subclasses are refused
            raise InvalidRequest(
                f"input '{name}': shape must be a list of non-negative integers, got {shape!r}"
            )
    count = math.prod(shape)
    if count > MAX_NONZERO_PRODUCT or (
        not count and math.prod([d for d in shape if d]) > MAX_NONZERO_PRODUCT
    ):
        raise InvalidRequest(f"input '{name}': shape {list(shape)} is too large")
    return tuple(shape)


def from_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes | memoryview) -> np.ndarray:
    """Decode the binary form of a tensor: little-endian elements, or length-prefixed BYTES elements.

    Work is bounded by the declared shape (which the model's admission has checked), never by the
    size of ``raw``: a BYTES walk stops after the declared count of elements."""
    count = math.prod(shape)
    if datatype == "BYTES":
        elements = _split_bytes(name, raw, count)
        array = np.empty(count, dtype=object)
        array[:] = elements
        return array.reshape(shape)
    dtype = numpy_dtype(datatype)
    expected = count * dtype.itemsize
    if len(raw) != expected:
        raise InvalidRequest(
            f"input '{name}': {datatype} shape {list(shape)} needs {expected} bytes of data, got {len(raw)}"
        )
    if datatype == "BOOL" and count and np.frombuffer(raw, dtype=np.uint8).max() > 1:
        # numpy would keep any other byte as a "bool" that is neither True nor False.
        raise InvalidRequest(f"input '{name}': BOOL data must be bytes 0 or 1")
    return np.frombuffer(raw, dtype=_LITTLE_ENDIAN[datatype]).reshape(shape)


def _split_bytes(name: str, raw: bytes | memoryview, count: int) -> list[bytes]:
    view = memoryview(raw)
    end = len(view)
    elements = []
    offset = 0
    for index in range(count):
        if offset == end:
            raise InvalidRequest(
                f"input '{name}': shape needs {count} BYTES elements, the data holds {index}"
            )
        if offset + 4 > end:
            raise InvalidRequest(f"input '{name}': BYTES data ends inside an element's 4-byte length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > end:
            raise InvalidRequest(
                f"input '{name}': BYTES element of {length} bytes runs past the end of the data"
            )
        elements.append(bytes(view[offset : offset + length]))
        offset += length
    if offset != end:
        # Not walked further: the declared count bounds the work, whatever the data holds.
        raise InvalidRequest(
            f"input '{name}': shape needs {count} BYTES elements, the data holds more "
            f"({end - offset} bytes are left after them)"
        )
    return elements


def to_raw(datatype: str, data: np.ndarray) -> bytes:
    if datatype == "BYTES":
        return b"".join(_LENGTH.pack(len(e)) + e for e in (_as_bytes(x) for x in data.reshape(-1)))
    return np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<")).tobytes()


def _as_bytes(element: object) -> bytes:
    if isinstance(element, bytes):
        return element
    if isinstance(element, str):
        return element.encode("utf-8")
    return str(element).encode("utf-8")
