"""The seam every response cache backend fills: opaque keys to opaque values, asynchronously."""

from __future__ import annotations

from typing import Protocol


class CacheUnavailable(Exception):
    """The backend could not answer (e.g. Redis down). The data plane then serves without the cache."""


class ResponseCache(Protocol):
    """A store of encoded responses. Backends raise CacheUnavailable, never anything else, on failure."""

    async def get(self, key: bytes) -> bytes | None:
        """The value stored under ``key``, or None on a miss."""
        ...

    async def put(self, key: bytes, value: bytes) -> None:
        """Store ``value``; a backend may drop it (too big, evicted at once)."""
        ...

    async def close(self) -> None: ...
