"""In-process LRU response cache bounded by the bytes it holds."""

from __future__ import annotations

from collections import OrderedDict

# Bytes each entry costs beyond its key and value: the dict slot, the two bytes objects' headers.
ENTRY_OVERHEAD = 128


class MemoryCache:
    """Least recently used entries go first once ``max_bytes`` would be exceeded."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self.evictions = 0
        self._entries: OrderedDict[bytes, bytes] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: bytes) -> bytes | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    async def put(self, key: bytes, value: bytes) -> None:
        size = _size(key, value)
        if size > self.max_bytes:
            return  # would evict everything and still not fit
        old = self._entries.pop(key, None)
        if old is not None:
            self.used_bytes -= _size(key, old)
        entries = self._entries
        while entries and self.used_bytes + size > self.max_bytes:
            evicted_key, evicted = entries.popitem(last=False)
            self.used_bytes -= _size(evicted_key, evicted)
            self.evictions += 1
        entries[key] = value
        self.used_bytes += size

    async def close(self) -> None:
        self._entries.clear()
        self.used_bytes = 0


def _size(key: bytes, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD
