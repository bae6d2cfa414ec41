"""Energy per inference: machine energy counters (RAPL, NVML) attributed to models by busy time.

Every ``interval`` the meter reads each source's energy counter and each model's busy (compute)
time. A model that was busy for a fraction f of the interval is charged f of the energy used in it
(fractions are scaled down when concurrent executions add up to more than the interval). Idle
energy is charged to nobody. Sources that cannot be read are reported as absent, never estimated.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inferd.metrics.gpu import Nvml

RAPL_ROOT = Path("/sys/class/powercap")
ModelKey = tuple[str, str]
# (name, version) -> (busy ns, inferences): read from ModelStats on the event loop thread.
BusyReader = Callable[[], dict[ModelKey, tuple[int, int]]]


class EnergySource(Protocol):
    name: str

    def joules(self) -> float:
        """A monotonically increasing energy counter in joules (wraps already undone)."""
        ...


class RaplSource:
    """Intel/AMD RAPL package domains (``intel-rapl:N``) under /sys/class/powercap."""

    name = "rapl"

    def __init__(self, domains: list[Path]) -> None:
        self._domains = domains
        self._ranges = [int((d / "max_energy_range_uj").read_text()) for d in domains]
        self._last = [self._read(d) for d in domains]
        self._total_uj = 0

    @classmethod
    def open(cls, root: Path = RAPL_ROOT) -> tuple[RaplSource | None, str]:
        # Top-level package domains only: subdomains (core, uncore, dram) are parts of them.
        domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not domains:
            return None, f"no RAPL domain under {root}"
        try:
            return cls(domains), ""
        except (OSError, ValueError) as exc:
            return None, f"RAPL not readable: {exc}"

    @staticmethod
    def _read(domain: Path) -> int:
        return int((domain / "energy_uj").read_text())

    def joules(self) -> float:
        for i, domain in enumerate(self._domains):
            now = self._read(domain)
            delta = now - self._last[i]
            if delta < 0:  # the counter wrapped
                delta += self._ranges[i]
            self._total_uj += delta
            self._last[i] = now
        return self._total_uj / 1e6


class NvmlSource:
    name = "nvml"

    def __init__(self, nvml: Nvml) -> None:
        self._nvml = nvml

    def joules(self) -> float:
        value = self._nvml.total_energy_joules()
        if value is None:
            raise OSError("NVML total energy is not supported on this GPU")
        return value


@dataclass(slots=True)
class _Attributed:
    joules: float = 0.0
    inferences: int = 0


class EnergyMeter(Collector):
    def __init__(self, sources: list[EnergySource], absent: dict[str, str], busy: BusyReader) -> None:
        self._sources = sources
        self._absent = dict(absent)
        self._busy = busy
        self._attributed: dict[ModelKey, _Attributed] = {}
        self._last_joules = [self._safe_read(s) for s in sources]
        self._last_busy = busy()
        self._last_ns = time.monotonic_ns()

    @property
    def active(self) -> bool:
        return bool(self._sources)

    def _safe_read(self, source: EnergySource) -> float | None:
        try:
            return source.joules()
        except (OSError, ValueError) as exc:
            self._absent[source.name] = str(exc)
            return None

    def tick(self) -> None:
        """Charge the energy used since the last tick to the models busy in it."""
        now_ns = time.monotonic_ns()
        interval_ns = now_ns - self._last_ns
        busy = self._busy()
        joules = [self._safe_read(s) for s in self._sources]
        used = sum(
            (new - old)
            for new, old in zip(joules, self._last_joules, strict=True)
            if new is not None and old is not None
        )
        deltas = {key: value[0] - self._last_busy.get(key, (0, 0))[0] for key, value in busy.items()}
        total_busy = sum(deltas.values())
        scale = 1.0 if total_busy <= interval_ns else interval_ns / total_busy
        for key, busy_ns in deltas.items():
            entry = self._attributed.setdefault(key, _Attributed())
            if interval_ns > 0 and busy_ns > 0:
                entry.joules += used * busy_ns / interval_ns * scale
            entry.inferences = busy[key][1]
        self._last_joules, self._last_busy, self._last_ns = joules, busy, now_ns

    def charged(self) -> dict[ModelKey, float]:
        """Joules charged to each model so far."""
        return {key: entry.joules for key, entry in self._attributed.items()}

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "inferd_energy_source_info",
            "Energy sources: available 1 when read, 0 with the reason it is absent",
            labels=["source", "reason"],
        )
        for source in self._sources:
            if source.name not in self._absent:
                info.add_metric([source.name, ""], 1)
        for name, reason in sorted(self._absent.items()):
            info.add_metric([name, reason], 0)
        yield info
        if not self._sources:
            return
        labels = ["model", "version"]
        energy = CounterMetricFamily(
            "inferd_energy_joules", "Measured energy charged to the model by busy time", labels=labels
        )
        per_inference = GaugeMetricFamily(
            "inferd_energy_per_inference_joules",
            "inferd_energy_joules_total / inferences counted since the server started",
            labels=labels,
        )
        for (model, version), entry in sorted(self._attributed.items()):
            energy.add_metric([model, version], entry.joules)
            if entry.inferences:
                per_inference.add_metric([model, version], entry.joules / entry.inferences)
        yield energy
        yield per_inference


def open_sources(
    nvml: Nvml | None, nvml_reason: str, rapl_root: Path = RAPL_ROOT
) -> tuple[list[EnergySource], dict[str, str]]:
    sources: list[EnergySource] = []
    absent: dict[str, str] = {}
    rapl, reason = RaplSource.open(rapl_root)
    if rapl is None:
        absent["rapl"] = reason
    else:
        sources.append(rapl)
    if nvml is None:
        absent["nvml"] = nvml_reason
    elif nvml.total_energy_joules() is None:
        absent["nvml"] = "NVML total energy is not supported on this GPU"
    else:
        sources.append(NvmlSource(nvml))
    return sources, absent
