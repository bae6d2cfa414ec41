"""Tensors read from and written to system shared memory regions, for both codecs."""

from __future__ import annotations

import math

import numpy as np

from inferd.datatypes import numpy_dtype
from inferd.errors import InvalidRequest
from inferd.protocol.tensors import from_raw, to_raw
from inferd.sharedmem import SharedMemoryAccess
from inferd.types import SharedMemoryRef

_NOT_REGISTERED = "{}: shared memory region '{}' is not registered"


def read_input(
    shm: SharedMemoryAccess | None, ref: SharedMemoryRef, name: str, datatype: str, shape: tuple[int, ...]
) -> np.ndarray:
    """Input ``name`` from its region; its declared shape was admitted, and its size is checked
    against the shape before any byte is read."""
    where = f"input '{name}'"
    if shm is None:
        raise InvalidRequest(_NOT_REGISTERED.format(where, ref.region))
    if datatype != "BYTES":
        expected = math.prod(shape) * numpy_dtype(datatype).itemsize
        if ref.byte_size != expected:
            raise InvalidRequest(
                f"{where}: {datatype} shape {list(shape)} needs {expected} bytes, "
                f"shared_memory_byte_size is {ref.byte_size}"
            )
    return from_raw(name, datatype, shape, shm.read(ref, where))


def check_output(shm: SharedMemoryAccess | None, ref: SharedMemoryRef, name: str) -> None:
    where = f"output '{name}'"
    if shm is None:
        raise InvalidRequest(_NOT_REGISTERED.format(where, ref.region))
    shm.check(ref, where)


def write_output(
    shm: SharedMemoryAccess | None, ref: SharedMemoryRef, name: str, datatype: str, data: np.ndarray
) -> int:
    """Output ``name`` written into its region (from the array's own memory when it can); returns
    the bytes written."""
    where = f"output '{name}'"
    if shm is None:
        raise InvalidRequest(_NOT_REGISTERED.format(where, ref.region))
    if datatype == "BYTES":
        raw = memoryview(to_raw(datatype, data))
    else:
        array = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
        raw = array.reshape(-1).view(np.uint8).data
    shm.write(ref, where, raw)
    return raw.nbytes


def output_parameters(ref: SharedMemoryRef, written: int) -> dict[str, object]:
    """What the response says of an output written into a region, in place of its data."""
    parameters: dict[str, object] = {"shared_memory_region": ref.region, "shared_memory_byte_size": written}
    if ref.offset:
        parameters["shared_memory_offset"] = ref.offset
    return parameters
