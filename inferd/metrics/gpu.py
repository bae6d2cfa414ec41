"""GPU utilization, memory and power through NVML, only where the driver and nvidia-ml-py exist."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class Nvml:
    """Handles of every GPU NVML sees. ``open()`` returns None (and says why) when there is none."""

    def __init__(self, module: Any, handles: list[Any]) -> None:
        self._nvml = module
        self.handles = handles

    @classmethod
    def open(cls) -> tuple[Nvml | None, str]:
        try:
            import pynvml  # nvidia-ml-py, the optional "gpu" extra
        except ImportError:
            return None, "nvidia-ml-py is not installed"
        try:
            pynvml.nvmlInit()
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            return None, f"NVML unavailable: {exc}"
        if not handles:
            return None, "NVML found no GPU"
        return cls(pynvml, handles), ""

    def total_energy_joules(self) -> float | None:
        """Energy used by every GPU since the driver loaded (Volta and later), else None."""
        try:
            millijoules = sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self.handles)
            return float(millijoules) / 1000
        except Exception:
            return None

    def collect_into(
        self,
        utilization: GaugeMetricFamily,
        used: GaugeMetricFamily,
        total: GaugeMetricFamily,
        power: GaugeMetricFamily,
        energy: CounterMetricFamily,
    ) -> None:
        nvml = self._nvml
        for index, handle in enumerate(self.handles):
            label = [str(index)]
            # Each query may be unsupported on a given board; report what the board answers.
            try:
                utilization.add_metric(label, nvml.nvmlDeviceGetUtilizationRates(handle).gpu / 100)
            except Exception as exc:
                log.debug("GPU %d utilization unavailable: %s", index, exc)
            try:
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                used.add_metric(label, float(memory.used))
                total.add_metric(label, float(memory.total))
            except Exception as exc:
                log.debug("GPU %d memory unavailable: %s", index, exc)
            try:
                power.add_metric(label, nvml.nvmlDeviceGetPowerUsage(handle) / 1000)
            except Exception as exc:
                log.debug("GPU %d power unavailable: %s", index, exc)
            try:
                energy.add_metric(label, nvml.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000)
            except Exception as exc:
                log.debug("GPU %d energy unavailable: %s", index, exc)


class GpuCollector(Collector):
    def __init__(self, nvml: Nvml) -> None:
        self._nvml = nvml

    def collect(self) -> Iterable[Metric]:
        labels = ["gpu"]
        utilization = GaugeMetricFamily(
            "inferd_gpu_utilization_ratio", "GPU busy fraction (NVML)", labels=labels
        )
        used = GaugeMetricFamily("inferd_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=labels)
        total = GaugeMetricFamily("inferd_gpu_memory_total_bytes", "GPU memory (NVML)", labels=labels)
        power = GaugeMetricFamily("inferd_gpu_power_watts", "GPU power draw (NVML)", labels=labels)
        energy = CounterMetricFamily(
            "inferd_gpu_energy_joules", "GPU energy since the driver loaded (NVML)", labels=labels
        )
        self._nvml.collect_into(utilization, used, total, power, energy)
        return [utilization, used, total, power, energy]
