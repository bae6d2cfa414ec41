"""Metrics as the server builds it, on a loaded repository and a directory laid out like RAPL's."""

from __future__ import annotations

from pathlib import Path

import modelfactory as mf
import pytest
from metricsutil import Samples
from onnx import TensorProto
from prometheus_client.parser import text_string_to_metric_families

from inferd.metrics.registry import Metrics
from inferd.repository.manager import ModelRepository


def _samples(metrics: Metrics) -> Samples:
    content_type, body = metrics.exposition()
    assert content_type.startswith(b"text/plain; version=0.0.4")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def _rapl(root: Path, energy_uj: int) -> None:
    domain = root / "intel-rapl:0"
    domain.mkdir(parents=True, exist_ok=True)
    (domain / "energy_uj").write_text(str(energy_uj))
    (domain / "max_energy_range_uj").write_text(str(10**12))


def _fp32_identity(path: Path) -> None:
    mf.identity(path, TensorProto.FLOAT)


def test_measured_energy_is_charged_to_the_busy_model(tmp_path: Path) -> None:
    mf.write_model(tmp_path / "models", "busy", _fp32_identity)
    mf.write_model(tmp_path / "models", "idle", _fp32_identity)
    repository = ModelRepository(tmp_path / "models")
    repository.load_all()
    rapl = tmp_path / "powercap"
    _rapl(rapl, 1_000_000)
    metrics = Metrics(repository, price_per_hour=3.6, rapl_root=rapl, use_nvml=False)

    busy = repository.get("busy").stats
    busy.record_execution(rows=4, requests=4, input_ns=0, infer_ns=1_000, output_ns=0)
    _rapl(rapl, 3_000_000)  # 2 J used since the meter started
    metrics.energy.tick()

    samples = _samples(metrics)
    labels = {"model": "busy", "version": "1"}
    energy = samples[("inferd_energy_joules_total", frozenset(labels.items()))]
    assert 0 < energy <= 2.0
    assert samples[("inferd_energy_per_inference_joules", frozenset(labels.items()))] == energy / 4
    idle = frozenset({"model": "idle", "version": "1"}.items())
    assert samples[("inferd_energy_joules_total", idle)] == 0
    assert samples[("inferd_energy_source_info", frozenset({"source": "rapl", "reason": ""}.items()))] == 1
    assert samples[("inferd_cost_dollars_total", frozenset(labels.items()))] == pytest.approx(1e-9)
    assert ("inferd_gpu_utilization_ratio", frozenset({"gpu": "0"}.items())) not in samples
