"""Registered system shared memory regions, and tensor reads and writes bounded by them.

Security (docs/security.md, "System shared memory"):
- A region is an open file descriptor on the client's POSIX shared memory object, never a mapping:
  a mapping that its owner truncates turns the next access into SIGBUS, which kills the server.
  Tensors are copied in and out with ``preadv``/``pwritev``, which answer a short count instead,
  and every access first checks the object's real size and link count (``fstat``).
- Every offset and size is checked against the registered region, and the region against the
  object's size, before any byte moves.
- With API keys on, a region is used only by the key that registered it.

All calls run on the server's event loop thread, as do register and unregister: a descriptor is
never closed while a read or write on it is in progress, so its number cannot be reused under one.
"""

from __future__ import annotations

import _posixshmem  # type: ignore[import-not-found]  # multiprocessing's shm_open; no stubs
import os
import re
import stat
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from inferd.errors import InvalidRequest, NotFound, PermissionDenied, Unsupported
from inferd.types import SharedMemoryRef

NO_CUDA = (
    "CUDA shared memory is not supported by inferd (it serves from host memory); "
    "use system shared memory instead"
)
MAX_REGIONS = 128
MAX_NAME_CHARS = 128
# POSIX shared memory names: one segment, as shm_open takes it (a leading slash is optional).
_KEY = re.compile(r"/?(?!\.{1,2}$)[A-Za-z0-9._-]{1,250}")
_NAME = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no spaces: it travels in URL paths
# Linux caps one read or write at this many bytes; larger tensors take several calls.
_CHUNK = 0x7FFFF000


@dataclass(slots=True)
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    fd: int
    owner: str | None  # the API key id that registered it (None without keys)

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}


class RegionRegistry:
    """The server's registered regions, by name."""

    def __init__(self, max_regions: int = MAX_REGIONS, unavailable: str | None = None) -> None:
        """``unavailable``: why this server cannot hold registrations (registering is refused)."""
        self._regions: dict[str, Region] = {}
        self._max_regions = max_regions
        self.unavailable = unavailable

    def register(self, name: str, key: str, offset: object, byte_size: object, owner: str | None) -> None:
        """Open ``key`` and keep it as region ``name`` (``offset``/``byte_size`` as the client sent
        them: checked here); ``owner``: the registering API key id."""
        if self.unavailable is not None:
            raise Unsupported(self.unavailable)
        _check_name(name)
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            raise InvalidRequest(
                "shared memory key must be one POSIX shared memory name (letters, digits, '.', '_', '-', "
                "an optional leading '/', at most 250 characters)"
            )
        offset = _count(name, "offset", offset)
        byte_size = _count(name, "byte_size", byte_size)
        if byte_size == 0:
            raise InvalidRequest(f"shared memory region '{name}': byte_size must be positive")
        if name in self._regions:
            raise InvalidRequest(f"shared memory region '{name}' is already registered")
        if len(self._regions) >= self._max_regions:
            raise InvalidRequest(
                f"cannot register shared memory region '{name}': {self._max_regions} regions are "
                "registered already (the limit); unregister some first"
            )
        try:
            fd = _posixshmem.shm_open("/" + key.lstrip("/"), os.O_RDWR, 0)
        except OSError as exc:
            raise InvalidRequest(
                f"shared memory region '{name}': unable to open key '{key}' for reading and writing "
                f"({exc.strerror})"
            ) from None
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise InvalidRequest(f"shared memory region '{name}': key '{key}' is not a memory object")
            if info.st_size < offset + byte_size:
                raise InvalidRequest(
                    f"shared memory region '{name}': offset {offset} + byte_size {byte_size} runs past "
                    f"the end of key '{key}' ({info.st_size} bytes)"
                )
        except BaseException:
            os.close(fd)
            raise
        self._regions[name] = Region(name, key, offset, byte_size, fd, owner)

    def unregister(self, name: str | None = None) -> None:
        """Release one region (an unknown name is not an error, as in Triton), or all of them."""
        names = list(self._regions) if name is None else [name]
        for each in names:
            region = self._regions.pop(each, None)
            if region is not None:
                os.close(region.fd)

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        if name is None:
            return [region.status() for region in self._regions.values()]
        region = self._regions.get(name)
        if region is None:
            raise NotFound(f"Unable to find system shared memory region: '{name}'")
        return [region.status()]

    def close(self) -> None:
        """At shutdown: every registration released."""
        self.unregister()

    def __len__(self) -> int:
        return len(self._regions)

    def access(self, caller: str | None) -> SharedMemoryAccess:
        return SharedMemoryAccess(self, caller)

    def resolve(self, ref: SharedMemoryRef, caller: str | None, where: str) -> Region:
        """The region ``ref`` names, if ``caller`` may use it and ``ref`` lies inside it."""
        region = self._regions.get(ref.region)
        if region is None:
            raise InvalidRequest(f"{where}: shared memory region '{ref.region}' is not registered")
        if region.owner is not None and region.owner != caller:
            raise PermissionDenied(
                f"{where}: shared memory region '{ref.region}' was registered by another API key"
            )
        if ref.offset + ref.byte_size > region.byte_size:
            raise InvalidRequest(
                f"{where}: shared_memory_offset {ref.offset} + shared_memory_byte_size {ref.byte_size} "
                f"runs past the end of region '{ref.region}' ({region.byte_size} bytes)"
            )
        return region


class SharedMemoryAccess(NamedTuple):
    """The regions as one caller may use them (a codec gets this with each request)."""

    registry: RegionRegistry
    caller: str | None

    def read(self, ref: SharedMemoryRef, where: str) -> memoryview:
        """A private copy of the bytes at ``ref`` (the caller has checked their count)."""
        region = self.registry.resolve(ref, self.caller, where)
        buffer = np.empty(ref.byte_size, dtype=np.uint8).data  # not zeroed: all of it is overwritten
        _transfer(region, ref, buffer, where, write=False)
        return buffer

    def check(self, ref: SharedMemoryRef, where: str) -> None:
        """Refuse an output's region before the model runs (checked again when it is written)."""
        self.registry.resolve(ref, self.caller, where)

    def write(self, ref: SharedMemoryRef, where: str, raw: memoryview) -> None:
        """``raw`` written at ``ref``, which it must fit."""
        region = self.registry.resolve(ref, self.caller, where)
        if raw.nbytes > ref.byte_size:
            raise InvalidRequest(
                f"{where} needs {raw.nbytes} bytes, more than its shared_memory_byte_size {ref.byte_size}"
            )
        _transfer(region, ref, raw, where, write=True)


def _count(name: str, field: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidRequest(f"shared memory region '{name}': {field} must be a non-negative integer")
    return value


def _check_name(name: object) -> None:
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"a shared memory region name is 1 to {MAX_NAME_CHARS} printable ASCII characters without spaces"
        )


def _transfer(region: Region, ref: SharedMemoryRef, buffer: memoryview, where: str, write: bool) -> None:
    """Copy between ``buffer`` and the region at ``ref``, after checking that the object is still
    linked and as large as registered. Never maps it, so a truncation meanwhile is a short count."""
    info = os.fstat(region.fd)
    if info.st_nlink == 0:
        raise InvalidRequest(f"{where}: shared memory region '{region.name}' was unlinked by its owner")
    end = region.offset + region.byte_size
    if info.st_size < end:
        raise InvalidRequest(
            f"{where}: shared memory region '{region.name}' was truncated to {info.st_size} bytes "
            f"(registered up to byte {end})"
        )
    position = region.offset + ref.offset
    done = 0
    total = buffer.nbytes
    while done < total:
        chunk = buffer[done : done + _CHUNK]
        count = (
            os.pwritev(region.fd, [chunk], position + done)
            if write
            else os.preadv(region.fd, [chunk], position + done)
        )
        if count <= 0:
            raise InvalidRequest(
                f"{where}: shared memory region '{region.name}' shrank while it was being read"
            )
        done += count
