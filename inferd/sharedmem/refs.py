"""Reading a tensor's ``shared_memory_*`` parameters, as tritonclient sends them (REST and gRPC alike)."""

from __future__ import annotations

from typing import Any

from inferd.errors import InvalidRequest
from inferd.types import SharedMemoryRef

REGION = "shared_memory_region"
OFFSET = "shared_memory_offset"
BYTE_SIZE = "shared_memory_byte_size"
SHM_KEYS = (REGION, OFFSET, BYTE_SIZE)


def parameter_ref(parameters: dict[str, Any], where: str) -> SharedMemoryRef | None:
    """The region a tensor names, removed from ``parameters``; None when it names none."""
    region = parameters.pop(REGION, None)
    offset = parameters.pop(OFFSET, 0)
    size = parameters.pop(BYTE_SIZE, None)
    if region is None:
        if size is not None or offset:
            raise InvalidRequest(f"{where}: {BYTE_SIZE} and {OFFSET} need {REGION}")
        return None
    if not isinstance(region, str) or not region:
        raise InvalidRequest(f"{where}: {REGION} must be a non-empty string")
    for key, value in ((OFFSET, offset), (BYTE_SIZE, size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidRequest(f"{where}: {key} must be a non-negative integer")
    assert isinstance(size, int)  # checked just above; mypy cannot follow the loop
    return SharedMemoryRef(region, offset, size)


def output_ref(parameters: dict[str, Any], name: str) -> SharedMemoryRef | None:
    return parameter_ref(dict(parameters), f"output '{name}'")
