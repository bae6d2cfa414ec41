"""``Metrics``: the server's one CollectorRegistry and everything registered in it."""

from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from inferd.metrics.energy import RAPL_ROOT, EnergyMeter, ModelKey, open_sources
from inferd.metrics.generative import GenerativeMetrics
from inferd.metrics.gpu import GpuCollector, Nvml
from inferd.metrics.models import ModelMetrics
from inferd.periodic import Periodic
from inferd.repository.manager import ModelRepository

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4


class Metrics:
    """Built once by the composition root; scraped on the event loop thread, like ModelStats."""

    def __init__(
        self,
        repository: ModelRepository,
        price_per_hour: float | None = None,
        energy_interval_s: float = 1.0,
        rapl_root: Path = RAPL_ROOT,
        use_nvml: bool = True,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._repository = repository
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, process_resident_memory_bytes
        PlatformCollector(registry=self.registry)
        # Model metrics are formatted by hand (fast); the registry holds everything else.
        self._models = ModelMetrics(repository, price_per_hour)
        self._generative = GenerativeMetrics(repository)
        nvml, nvml_reason = Nvml.open() if use_nvml else (None, "disabled")
        if nvml is not None:
            self.registry.register(GpuCollector(nvml))
        sources, absent = open_sources(nvml, nvml_reason, rapl_root)
        self.energy = EnergyMeter(sources, absent, self._busy)
        self.registry.register(self.energy)
        self._sampling = Periodic(self.energy.tick, energy_interval_s, "energy sampling")

    def register(self, collector: Collector) -> None:
        self.registry.register(collector)

    def exposition(self) -> tuple[bytes, bytes]:
        """(content type, body) of the Prometheus text format."""
        models = self._models.render() + self._generative.render()
        return CONTENT_TYPE.encode(), models.encode() + generate_latest(self.registry)

    def _busy(self) -> dict[ModelKey, tuple[int, int]]:
        return {
            (model.name, model.version): (model.stats.busy.ns, model.stats.inference_count)
            for entry in self._repository.entries()
            for model in entry.versions.values()
        }

    def start(self) -> None:
        """Start sampling energy in the background (only when a source exists)."""
        if self.energy.active:
            self._sampling.start()

    async def stop(self) -> None:
        await self._sampling.stop()
