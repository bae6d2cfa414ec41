"""deploy/kserve and deploy/kubernetes, offline: every manifest validates against its schema (the
Kubernetes API's for core kinds, the vendored CRDs' openAPIV3Schema for KServe, KEDA and the Prometheus
Operator), the overlays render with `kubectl kustomize`, and the pieces agree with each other and with
what inferd does (ports, probes, drain, the autoscaling metric)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
CRDS = Path(__file__).resolve().parent / "crds"
KUBERNETES_VERSION = "1.30.0"  # the oldest the manifests promise to work on
CORE_GROUPS = {"v1", "apps/v1", "policy/v1", "autoscaling/v2"}
OVERLAYS = ("hpa", "keda")
METRIC = "inferd_pending_requests"


@cache
def _crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of each vendored CRD, made strict."""
    schemas = {}
    for path in CRDS.glob("*.json.gz"):
        crd = json.loads(gzip.decompress(path.read_bytes()))
        schemas[(f"{crd['group']}/{crd['version']}", crd["kind"])] = _strict(crd["openAPIV3Schema"])
    return schemas


def _strict(schema: Any) -> Any:
    """The API server prunes fields a CRD does not declare, silently: here they fail instead, so a
    misspelt field is caught (what kubernetes-validate's strict mode does for core kinds)."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {
        k: _strict(v) if k != "properties" else {n: _strict(s) for n, s in v.items()}
        for k, v in schema.items()
    }
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


@cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: `kubectl kustomize` renders the overlays")
    out = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "kubernetes" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return tuple(d for d in yaml.safe_load_all(out) if d)


def _kserve() -> list[dict[str, Any]]:
    return [d for p in sorted((DEPLOY / "kserve").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text())]


def _one(documents: tuple[dict[str, Any], ...] | list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [d for d in documents if d["kind"] == kind]
    return found


def _validate(document: dict[str, Any]) -> None:
    api, kind = document["apiVersion"], document["kind"]
    if api in CORE_GROUPS:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        return
    schema = _crd_schemas()[(api, kind)]
    jsonschema.validate(document, schema, cls=jsonschema.Draft4Validator)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_rendered_overlay_validates(overlay: str) -> None:
    documents = _rendered(overlay)
    kinds = {d["kind"] for d in documents}
    assert {"Deployment", "Service", "PodDisruptionBudget", "ServiceMonitor"} <= kinds
    assert ("HorizontalPodAutoscaler" in kinds) == (overlay == "hpa")
    assert ("ScaledObject" in kinds) == (overlay == "keda")
    for document in documents:
        _validate(document)


def test_the_kserve_manifests_validate() -> None:
    documents = _kserve()
    assert {d["kind"] for d in documents} == {"ClusterServingRuntime", "InferenceService"}
    for document in documents:
        _validate(document)


def test_a_manifest_breaking_its_schema_is_caught() -> None:
    """The validation can fail: a wrong field type in a core kind and in a CRD kind."""
    deployment = _one(_rendered("hpa"), "Deployment")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(broken)
    runtime = json.loads(json.dumps(_one(_kserve(), "ClusterServingRuntime")))
    runtime["spec"]["protocolVersions"] = "v2"
    with pytest.raises(jsonschema.ValidationError):
        _validate(runtime)
    service = json.loads(json.dumps(_one(_kserve(), "InferenceService")))
    service["spec"]["predictor"]["model"]["storageURI"] = "pvc://misspelt"
    with pytest.raises(jsonschema.ValidationError):
        _validate(service)


def test_the_serving_runtime_is_what_kserve_expects_of_a_runtime() -> None:
    runtime = _one(_kserve(), "ClusterServingRuntime")["spec"]
    formats = {f["name"] for f in runtime["supportedModelFormats"]}
    assert {"onnx", "python", "sklearn", "xgboost", "lightgbm", "pytorch", "ensemble"} <= formats
    assert runtime["protocolVersions"] == ["v2", "grpc-v2"]
    [container] = runtime["containers"]
    assert container["name"] == "kserve-container"
    args = container["args"]
    assert "--model-name={{.Name}}" in args and "--model-repository=/mnt/models" in args
    assert runtime["annotations"]["prometheus.kserve.io/path"] == "/metrics"
    assert f"--http-port={runtime['annotations']['prometheus.kserve.io/port']}" in args
    security = container["securityContext"]
    assert security["runAsUser"] == 1000 and security["runAsNonRoot"]
    # A read-only root filesystem keeps /tmp writable (the single-model view, converters' scratch).
    if security.get("readOnlyRootFilesystem"):
        tmp = {m["name"] for m in container["volumeMounts"] if m["mountPath"] == "/tmp"}
        assert tmp and {v["name"] for v in runtime["volumes"]} >= tmp
    service = _one(_kserve(), "InferenceService")["spec"]["predictor"]
    assert service["model"]["runtime"] == _one(_kserve(), "ClusterServingRuntime")["metadata"]["name"]
    assert service["model"]["modelFormat"]["name"] in formats


def _flag(args: list[str], name: str) -> str:
    [value] = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    return value


def test_the_deployment_drains_within_its_grace_period_behind_its_probes() -> None:
    documents = _rendered("hpa")
    pod = _one(documents, "Deployment")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    sleep = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = float(_flag(container["args"], "drain-timeout"))
    assert pod["terminationGracePeriodSeconds"] > sleep + drain
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {
        "http": int(_flag(container["args"], "http-port")),
        "grpc": int(_flag(container["args"], "grpc-port")),
    }
    service = _one(documents, "Service")["spec"]
    assert {p["name"]: p.get("appProtocol") for p in service["ports"]} == {"http": "http", "grpc": "grpc"}
    pod_labels = _one(documents, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind in ("Service", "PodDisruptionBudget", "ServiceMonitor"):
        spec = _one(documents, kind)["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        target = _one(documents, "Service")["metadata"]["labels"] if kind == "ServiceMonitor" else pod_labels
        assert selector.items() <= target.items(), kind
    assert _one(documents, "ServiceMonitor")["spec"]["endpoints"][0]["port"] == "http"
    mounts = {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]}
    assert mounts[_flag(container["args"], "model-repository")] is True


def test_both_autoscalers_read_the_metric_the_adapter_serves() -> None:
    hpa = _one(_rendered("hpa"), "HorizontalPodAutoscaler")["spec"]
    assert [m["pods"]["metric"]["name"] for m in hpa["metrics"]] == [METRIC]
    adapter = yaml.safe_load((DEPLOY / "kubernetes" / "hpa" / "prometheus-adapter-values.yaml").read_text())
    [rule] = adapter["rules"]["custom"]
    assert rule["name"]["as"] == METRIC and rule["seriesQuery"].startswith(METRIC + "{")
    assert set(rule["resources"]["overrides"]) == {"namespace", "pod"}
    keda = _one(_rendered("keda"), "ScaledObject")["spec"]
    assert keda["scaleTargetRef"]["name"] == _one(_rendered("keda"), "Deployment")["metadata"]["name"]
    [trigger] = keda["triggers"]
    assert trigger["type"] == "prometheus" and METRIC in trigger["metadata"]["query"]
