"""The data plane's one inference path, in-process with small real runtimes and caches:
a version swap while a cache lookup awaits, a canary rollout that keeps the cache and drift
sampling, and cache entries confined to the API key that stored them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from inferd.cache.memory import MemoryCache
from inferd.dataplane.dataplane import DataPlane
from inferd.drift.monitor import DriftConfig, DriftMonitor
from inferd.drift.profile import build_profile
from inferd.model_config import ModelConfig
from inferd.repository.manager import ModelRepository
from inferd.runtimes.base import Signature
from inferd.types import InferRequest, Tensor, TensorSpec

CACHED = "response_cache: true\n"


class FactorRuntime:
    """Multiplies by the number in the model file."""

    def __init__(self, path: Path, config: ModelConfig) -> None:
        self.factor = float(path.read_text())
        self.signature = Signature((TensorSpec("x", "FP32", (4,)),), (TensorSpec("y", "FP32", (4,)),), 8)
        self.instances = 1

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] * self.factor}

    def close(self) -> None:
        pass


class AwaitingCache(MemoryCache):
    """An in-process cache whose lookups wait for ``released``, as a network backend's await would."""

    def __init__(self) -> None:
        super().__init__(1 << 20)
        self.waiting = asyncio.Event()
        self.released = asyncio.Event()

    async def get(self, key: bytes) -> bytes | None:
        self.waiting.set()
        await self.released.wait()
        return await super().get(key)


def _write(root: Path, version: int, factor: str, config: str | None = None) -> None:
    (root / "m" / str(version)).mkdir(parents=True, exist_ok=True)
    (root / "m" / str(version) / "model.onnx").write_text(factor)
    if config is not None:
        (root / "m" / "config.yaml").write_text(config)


def _request(value: float = 1.0) -> InferRequest:
    return InferRequest("m", None, [Tensor("x", "FP32", np.full((1, 4), value, dtype=np.float32))])


def test_a_swap_while_a_cache_lookup_awaits_still_serves_the_request_on_its_version(tmp_path: Path) -> None:
    async def scenario() -> None:
        _write(tmp_path, 1, "1", CACHED)
        repository = ModelRepository(tmp_path, FactorRuntime)
        await repository.load_initial(None, exit_on_error=True)
        cache = AwaitingCache()
        dataplane = DataPlane(repository, cache)
        waiting = asyncio.ensure_future(dataplane.infer(_request()))
        await cache.waiting.wait()  # resolved version 1, now awaiting the cache
        _write(tmp_path, 2, "2")
        await repository.poll()  # version 2 serves; version 1 starts draining
        assert repository.get("m").version == "2"
        for _ in range(5):
            await asyncio.sleep(0)
        old = repository.entry("m").status["1"]
        assert old.state.value == "draining"  # it waits for the request that holds it
        cache.released.set()
        response = await waiting
        assert (response.version, float(response.outputs[0].data[0, 0])) == ("1", 1.0)
        assert (await dataplane.infer(_request())).version == "2"
        await repository.close()
        assert repository.entry("m").status["1"].state.value == "unloaded"

    asyncio.run(scenario())


def _drift() -> DriftMonitor:
    profile = build_profile({"x": np.random.default_rng(1).normal(size=(500, 4))}, batched=True)
    return DriftMonitor({"m": profile}, DriftConfig(sample_every=1, window_rows=100, min_rows=1))


def _window_rows(monitor: DriftMonitor) -> float:
    registry = CollectorRegistry()
    registry.register(monitor)
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("inferd_drift_window_rows{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no window row count exported")


def test_a_canary_rollout_keeps_the_response_cache_and_drift_sampling(tmp_path: Path) -> None:
    async def scenario() -> None:
        _write(tmp_path, 1, "1", "version_policy: {specific: [1]}\n" + CACHED)
        _write(tmp_path, 2, "2")
        repository = ModelRepository(tmp_path, FactorRuntime)
        await repository.load_initial(None, exit_on_error=True)
        drift = _drift()
        dataplane = DataPlane(repository, MemoryCache(1 << 20), drift=drift)
        guard = {"min_requests": 1_000_000}
        await repository.start_rollout("m", {"candidate": 2, "canary_percent": 50, "guard": guard})
        answers = [await dataplane.infer(_request(3.0)) for _ in range(8)]
        # Each version answered its share; from the second request on, each from its cache entry.
        assert {(r.version, float(r.outputs[0].data[0, 0])) for r in answers} == {("1", 3.0), ("2", 6.0)}
        stable, candidate = repository.get("m", "1").stats, repository.get("m", "2").stats
        assert (stable.cache_miss.count, candidate.cache_miss.count) == (1, 1)
        assert stable.cache_hit.count + candidate.cache_hit.count == 6
        assert stable.execution_count + candidate.execution_count == 2
        assert stable.success.count + candidate.success.count == 8
        drift.update()
        assert _window_rows(drift) == 8  # every request sampled, whichever version answered
        await repository.close()

    asyncio.run(scenario())


def test_cache_entries_are_per_api_key_unless_shared(tmp_path: Path) -> None:
    async def scenario() -> None:
        _write(tmp_path, 1, "1", CACHED)
        repository = ModelRepository(tmp_path, FactorRuntime)
        await repository.load_initial(None, exit_on_error=True)
        stats = repository.get("m").stats
        separate = DataPlane(repository, MemoryCache(1 << 20))
        await separate.infer(_request(5.0), caller="alice")
        await separate.infer(_request(5.0), caller="bob")
        assert (stats.cache_hit.count, stats.cache_miss.count) == (0, 2)
        await separate.infer(_request(5.0), caller="alice")
        assert stats.cache_hit.count == 1

        shared = DataPlane(repository, MemoryCache(1 << 20), cache_shared_across_keys=True)
        await shared.infer(_request(6.0), caller="alice")
        await shared.infer(_request(6.0), caller="bob")
        assert stats.cache_hit.count == 2
        await repository.close()

    asyncio.run(scenario())
