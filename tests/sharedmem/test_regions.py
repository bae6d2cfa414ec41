"""RegionRegistry in process: limits, descriptors released on unregister and at close, owners."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from multiprocessing import shared_memory
from pathlib import Path

import pytest

from inferd.errors import InvalidRequest, PermissionDenied
from inferd.sharedmem import RegionRegistry
from inferd.types import SharedMemoryRef


@pytest.fixture
def segment() -> Iterator[shared_memory.SharedMemory]:
    made = shared_memory.SharedMemory(name=f"inferd_unit_{uuid.uuid4().hex[:8]}", create=True, size=256)
    yield made
    made.close()
    made.unlink()


def _open_descriptors(name: str) -> int:
    """How many of this process's descriptors point at the shared memory object ``name``."""
    fds = Path("/proc/self/fd")
    return sum(1 for fd in fds.iterdir() if os.path.realpath(fd).endswith(f"/dev/shm/{name}"))


def test_descriptors_are_released_on_unregister_and_close(segment: shared_memory.SharedMemory) -> None:
    registry = RegionRegistry()
    before = _open_descriptors(segment.name)
    registry.register("a", segment.name, 0, 128, None)
    registry.register("b", "/" + segment.name, 128, 128, None)
    assert _open_descriptors(segment.name) == before + 2
    registry.unregister("a")
    assert _open_descriptors(segment.name) == before + 1 and len(registry) == 1
    registry.close()
    assert _open_descriptors(segment.name) == before and len(registry) == 0


def test_the_region_count_is_bounded(segment: shared_memory.SharedMemory) -> None:
    registry = RegionRegistry(max_regions=2)
    registry.register("a", segment.name, 0, 8, None)
    registry.register("b", segment.name, 0, 8, None)
    with pytest.raises(InvalidRequest, match="2 regions are registered already"):
        registry.register("c", segment.name, 0, 8, None)
    registry.unregister("a")
    registry.register("c", segment.name, 0, 8, None)
    registry.close()


def test_a_region_is_used_only_by_the_key_that_registered_it(segment: shared_memory.SharedMemory) -> None:
    registry = RegionRegistry()
    registry.register("a", segment.name, 0, 16, "admin")
    segment.buf[:4] = b"abcd"
    assert bytes(registry.access("admin").read(SharedMemoryRef("a", 0, 4), "input 'x'")) == b"abcd"
    with pytest.raises(PermissionDenied, match="registered by another API key"):
        registry.access("alice").read(SharedMemoryRef("a", 0, 4), "input 'x'")
    registry.close()


def test_writes_land_in_the_region(segment: shared_memory.SharedMemory) -> None:
    registry = RegionRegistry()
    registry.register("a", segment.name, 64, 16, None)
    registry.access(None).write(SharedMemoryRef("a", 4, 8), "output 'y'", memoryview(b"12345678"))
    assert bytes(segment.buf[68:76]) == b"12345678"
    with pytest.raises(InvalidRequest, match="needs 9 bytes, more than its shared_memory_byte_size 8"):
        registry.access(None).write(SharedMemoryRef("a", 4, 8), "output 'y'", memoryview(b"123456789"))
    registry.close()


def test_keys_that_are_links_or_not_memory_objects_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"x" * 64)
    link = Path(f"/dev/shm/inferd_link_{uuid.uuid4().hex[:8]}")
    fifo = Path(f"/dev/shm/inferd_fifo_{uuid.uuid4().hex[:8]}")
    link.symlink_to(target)
    os.mkfifo(fifo)
    registry = RegionRegistry()
    try:
        with pytest.raises(InvalidRequest, match="unable to open key"):  # shm_open never follows links
            registry.register("a", link.name, 0, 8, None)
        with pytest.raises(InvalidRequest, match="is not a memory object"):
            registry.register("b", fifo.name, 0, 8, None)
        assert len(registry) == 0
    finally:
        link.unlink()
        fifo.unlink()
