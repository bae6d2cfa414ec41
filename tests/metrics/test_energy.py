"""Energy sources and attribution, on a directory laid out like /sys/class/powercap."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from inferd.metrics.energy import EnergyMeter, ModelKey, RaplSource, open_sources


def _rapl_domain(root: Path, name: str, energy_uj: int, max_uj: int) -> Path:
    domain = root / name
    domain.mkdir(parents=True)
    (domain / "energy_uj").write_text(f"{energy_uj}\n")
    (domain / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return domain


def test_rapl_adds_packages_undoes_wraps_and_skips_subdomains(tmp_path: Path) -> None:
    package0 = _rapl_domain(tmp_path, "intel-rapl:0", 900, 1000)
    package1 = _rapl_domain(tmp_path, "intel-rapl:1", 100, 1000)
    _rapl_domain(tmp_path, "intel-rapl:0:0", 5, 1000)  # core subdomain: part of package 0
    source, reason = RaplSource.open(tmp_path)
    assert source is not None and reason == ""
    assert source.joules() == 0
    (package0 / "energy_uj").write_text("100\n")  # wrapped: 900 -> 1000 -> 100 is 200 µJ
    (package1 / "energy_uj").write_text("150\n")
    assert source.joules() == (200 + 50) / 1e6


def test_missing_sources_are_reported_absent_with_a_reason(tmp_path: Path) -> None:
    sources, absent = open_sources(None, "nvidia-ml-py is not installed", tmp_path)
    assert sources == []
    assert absent == {
        "rapl": f"no RAPL domain under {tmp_path}",
        "nvml": "nvidia-ml-py is not installed",
    }
    meter = EnergyMeter(sources, absent, dict)
    registry = CollectorRegistry()
    registry.register(meter)
    text = generate_latest(registry).decode()
    assert 'inferd_energy_source_info{reason="nvidia-ml-py is not installed",source="nvml"} 0.0' in text
    # Absent sources invent nothing: no energy figures at all.
    assert "inferd_energy_joules" not in text


class _CountingSource:
    """A real energy counter we advance by hand."""

    name = "counter"

    def __init__(self) -> None:
        self.value = 0.0

    def joules(self) -> float:
        return self.value


def test_energy_is_charged_by_busy_share_and_idle_energy_to_nobody() -> None:
    source = _CountingSource()
    busy: dict[ModelKey, tuple[int, int]] = {("a", "1"): (0, 0), ("b", "1"): (0, 0)}
    meter = EnergyMeter([source], {}, lambda: dict(busy))
    # Busy shares are fractions of the wall interval; make the interval long compared to them by
    # giving the models tiny busy times: each gets at most its share, the idle rest goes to nobody.
    source.value = 100.0
    busy[("a", "1")] = (1, 10)
    meter.tick()
    charged = meter.charged()
    assert 0 < charged[("a", "1")] <= 100.0
    assert charged[("b", "1")] == 0
    registry = CollectorRegistry()
    registry.register(meter)
    text = generate_latest(registry).decode()
    assert 'inferd_energy_source_info{reason="",source="counter"} 1.0' in text
    assert 'inferd_energy_per_inference_joules{model="a",version="1"}' in text
