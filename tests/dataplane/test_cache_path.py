"""The data plane's cache path with small real caches that misbehave: requests never fail because of them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import modelfactory as mf
import numpy as np
from onnx import TensorProto

from inferd.cache.memory import MemoryCache
from inferd.dataplane.dataplane import DataPlane
from inferd.repository.manager import ModelRepository
from inferd.types import InferRequest, Tensor


class BrokenCache:
    """Every call fails with something that is not CacheUnavailable (a backend bug)."""

    async def get(self, key: bytes) -> bytes | None:
        raise RuntimeError("backend bug")

    async def put(self, key: bytes, value: bytes) -> None:
        raise RuntimeError("backend bug")

    async def close(self) -> None:
        pass


class GarbageCache(MemoryCache):
    """Answers every lookup with bytes that are not an entry (another program's key)."""

    async def get(self, key: bytes) -> bytes | None:
        return b"\x05\x00\x00\x00[[1]]trailing"


def _repository(root: Path) -> ModelRepository:
    mf.write_model(
        root,
        "cached",
        lambda p: mf.identity(p, TensorProto.FLOAT),
        config="max_batch_size: 4\nresponse_cache: true\n",
    )
    repository = ModelRepository(root)
    repository.load_all()
    return repository


def _request(value: float) -> InferRequest:
    return InferRequest("cached", None, [Tensor("INPUT0", "FP32", np.full((1, 4), value, np.float32))])


def _serve(cache: object, root: Path, values: list[float]) -> tuple[list[np.ndarray], object]:
    repository = _repository(root)
    dataplane = DataPlane(repository, cache)  # type: ignore[arg-type]

    async def run() -> list[np.ndarray]:
        try:
            return [(await dataplane.infer(_request(v))).outputs[0].data for v in values]
        finally:
            await repository.close()

    return asyncio.run(run()), repository.get("cached").stats


def test_a_cache_that_raises_anything_is_bypassed_and_counted(tmp_path: Path) -> None:
    outputs, stats = _serve(BrokenCache(), tmp_path, [1.0, 1.0, 2.0])
    assert [o.tolist() for o in outputs] == [[[1.0] * 4], [[1.0] * 4], [[2.0] * 4]]
    assert stats.cache_errors == 3 and stats.cache_hit.count == 0 and stats.execution_count == 3  # type: ignore[attr-defined]


def test_an_entry_that_does_not_decode_is_a_miss(tmp_path: Path) -> None:
    outputs, stats = _serve(GarbageCache(1 << 20), tmp_path, [3.0, 3.0])
    assert [o.tolist() for o in outputs] == [[[3.0] * 4], [[3.0] * 4]]
    assert (stats.cache_hit.count, stats.cache_miss.count, stats.cache_errors) == (0, 2, 0)  # type: ignore[attr-defined]


def test_the_memory_cache_hits_in_process(tmp_path: Path) -> None:
    outputs, stats = _serve(MemoryCache(1 << 20), tmp_path, [4.0, 4.0, 4.0])
    assert all(o.tolist() == [[4.0] * 4] for o in outputs)
    assert (stats.cache_hit.count, stats.cache_miss.count, stats.execution_count) == (2, 1, 1)  # type: ignore[attr-defined]
