"""deploy/: the Grafana dashboard and the Prometheus rules parse, name only metrics inferd exports,
and (with promtool, from Debian's prometheus package) the rules pass their unit tests."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from inferd.drift.monitor import DriftConfig, DriftMonitor
from inferd.drift.profile import build_profile
from inferd.metrics.energy import EnergyMeter
from inferd.metrics.gpu import GpuCollector, Nvml
from inferd.metrics.models import ModelMetrics
from inferd.repository.manager import ModelRepository

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DASHBOARD = DEPLOY / "grafana" / "inferd-dashboard.json"
RULES = DEPLOY / "prometheus" / "inferd-alerts.yml"
RULE_TESTS = DEPLOY / "prometheus" / "inferd-alerts.test.yml"
_NAME = re.compile(r"\b(inferd_[a-z0-9_]+|process_[a-z0-9_]+)")


class _Source:
    name = "test"

    def joules(self) -> float:
        return 0.0


def _exported_names(tmp_path: Path) -> set[str]:
    """Every sample name inferd can export, with each optional collector switched on."""
    from prometheus_client import ProcessCollector, generate_latest

    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    registry.register(EnergyMeter([_Source()], {}, dict))
    registry.register(GpuCollector(Nvml(None, [])))
    profile = build_profile({"x": np.zeros((20, 1))}, batched=True)
    registry.register(DriftMonitor({"m": profile}, DriftConfig()))
    text = (
        ModelMetrics(ModelRepository(tmp_path), price_per_hour=1.0).render()
        + generate_latest(registry).decode()
    )
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def test_dashboard_is_valid_json_with_unique_ids_and_a_query_per_panel() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in _panels(dashboard):
        assert panel["targets"], panel["title"]
        assert all(t["expr"].strip() for t in panel["targets"]), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    used = set(re.findall(r"\$([a-z_]+)", DASHBOARD.read_text())) - {"__rate_interval"}
    assert used <= variables


def test_dashboard_and_rules_name_only_exported_metrics(tmp_path: Path) -> None:
    exported = _exported_names(tmp_path)
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [t["expr"] for p in _panels(dashboard) for t in p["targets"]]
    rules = yaml.safe_load(RULES.read_text())
    expressions += [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    referenced = {name for expr in expressions for name in _NAME.findall(expr)}
    assert referenced, "no metric found in the expressions"
    assert referenced <= exported, sorted(referenced - exported)


def test_rules_have_what_alertmanager_needs() -> None:
    rules = yaml.safe_load(RULES.read_text())
    alerts = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert {"InferdHighP99Latency", "InferdHighErrorRate", "InferdInputDriftPSI"} <= set(alerts)
    for rule in alerts.values():
        assert rule["expr"] and rule["for"] and rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (scripts/test does it)")
    return promtool


def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = _promtool()
    for command in (["check", "rules", str(RULES)], ["test", "rules", str(RULE_TESTS)]):
        result = subprocess.run(
            [promtool, *command], capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_autoscaling_metric_is_exported(tmp_path: Path) -> None:
    """deploy/kubernetes scales on it (HPA through prometheus-adapter, KEDA): tests/deploy checks that
    the manifests name it, this that inferd exports it."""
    assert "inferd_pending_requests" in _exported_names(tmp_path)
