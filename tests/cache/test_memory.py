"""The in-process cache: least recently used entries go first, and the byte budget is never exceeded."""

from __future__ import annotations

import asyncio

from inferd.cache.memory import ENTRY_OVERHEAD, MemoryCache


def test_lru_eviction_keeps_within_the_byte_budget() -> None:
    async def scenario() -> None:
        entry = 1 + 100 + ENTRY_OVERHEAD
        cache = MemoryCache(max_bytes=3 * entry)
        for key in (b"a", b"b", b"c"):
            await cache.put(key, key * 100)
        assert await cache.get(b"a") == b"a" * 100  # now the most recently used
        await cache.put(b"d", b"d" * 100)
        assert await cache.get(b"b") is None
        assert [await cache.get(k) is not None for k in (b"a", b"c", b"d")] == [True, True, True]
        assert cache.used_bytes == 3 * entry <= cache.max_bytes
        assert cache.evictions == 1

    asyncio.run(scenario())


def test_replacing_an_entry_and_oversized_values() -> None:
    async def scenario() -> None:
        cache = MemoryCache(max_bytes=1000)
        await cache.put(b"k", b"x" * 10)
        await cache.put(b"k", b"y" * 20)
        assert await cache.get(b"k") == b"y" * 20
        assert cache.used_bytes == 1 + 20 + ENTRY_OVERHEAD
        await cache.put(b"big", b"z" * 2000)  # larger than the whole budget: not stored, nothing evicted
        assert await cache.get(b"big") is None and await cache.get(b"k") is not None
        await cache.close()
        assert len(cache) == 0 and cache.used_bytes == 0

    asyncio.run(scenario())


def test_a_zero_budget_stores_nothing() -> None:
    async def scenario() -> None:
        cache = MemoryCache(max_bytes=0)
        await cache.put(b"k", b"v")
        assert await cache.get(b"k") is None

    asyncio.run(scenario())
