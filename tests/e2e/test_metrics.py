"""/metrics against a real server: counters and histograms move with requests and agree with the
Triton statistics endpoint."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from httputil import request
from metricsutil import Samples, scrape, value
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

PRICE_PER_HOUR = 36.0


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(
        repository,
        tmp_path_factory.mktemp("metrics"),
        "--metrics-port",
        "0",
        "--price-per-hour",
        str(PRICE_PER_HOUR),
    )
    yield running
    assert running.stop() == 0, running.log()


def _infer_simple(client: object, module: object, rows: int) -> None:
    inputs = []
    for name in ("INPUT0", "INPUT1"):
        tensor = module.InferInput(name, [rows, 16], "INT32")  # type: ignore[attr-defined]
        tensor.set_data_from_numpy(np.ones((rows, 16), dtype=np.int32))
        inputs.append(tensor)
    client.infer("simple", inputs)  # type: ignore[attr-defined]


def _model(samples: Samples, name: str, model: str = "simple", **labels: str) -> float:
    return value(samples, name, model=model, version="1", **labels)


def test_metrics_are_served_on_the_rest_port_and_the_metrics_port(server: RunningServer) -> None:
    assert server.metrics_port is not None
    index = httpclient.InferenceServerClient(server.http_url).get_model_repository_index()
    for address in (server.http_url, f"127.0.0.1:{server.metrics_port}"):
        samples = scrape(address)
        assert value(samples, "inferd_models_loaded") == len(index)
        assert value(samples, "inferd_model_ready", model="versioned", version="3") == 1
        # Every model's version loaded once at start, a lifecycle decision counted per model.
        assert value(samples, "inferd_lifecycle_events_total", model="simple", event="loads") == 1
        assert value(samples, "inferd_queue_full_rejections_total", model="simple", version="1") == 0
    status, _, _ = request(f"127.0.0.1:{server.metrics_port}", "GET", "/v2/models/simple")
    assert status == 404  # the metrics port serves metrics only


def test_requests_move_counters_and_histograms(server: RunningServer) -> None:
    before = scrape(server.http_url)
    http = httpclient.InferenceServerClient(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    for _ in range(3):
        _infer_simple(http, httpclient, rows=1)
    for _ in range(2):
        _infer_simple(grpc, grpcclient, rows=2)
    after = scrape(server.http_url)

    def delta(name: str) -> float:
        return _model(after, name) - _model(before, name)

    assert delta("inferd_request_success_total") == 5
    assert delta("inferd_request_duration_seconds_count") == 5
    assert delta("inferd_request_duration_seconds_sum") > 0
    assert delta("inferd_queue_duration_seconds_count") == 5
    assert delta("inferd_inferences_total") == 3 + 2 * 2
    # Rows per execution: the histogram's sum is the rows, its count the executions.
    assert delta("inferd_batch_size_sum") == 7
    assert delta("inferd_batch_size_count") == delta("inferd_executions_total")
    assert delta("inferd_compute_duration_seconds_count") == delta("inferd_executions_total")
    assert _model(after, "inferd_pending_requests") == 0
    # The response cache hook: present per model, moved by ModelStats.cache_hit / cache_miss.
    assert ("inferd_cache_hits_total", frozenset({("model", "simple"), ("version", "1")})) in after
    assert ("inferd_cache_misses_total", frozenset({("model", "simple"), ("version", "1")})) in after


def test_failures_are_counted_by_error_kind(server: RunningServer) -> None:
    before = scrape(server.http_url)
    http = httpclient.InferenceServerClient(server.http_url)
    wrong = httpclient.InferInput("INPUT0", [1, 16], "FP32")
    wrong.set_data_from_numpy(np.ones((1, 16), dtype=np.float32))
    other = httpclient.InferInput("INPUT1", [1, 16], "INT32")
    other.set_data_from_numpy(np.ones((1, 16), dtype=np.int32))
    with pytest.raises(InferenceServerException):
        http.infer("simple", [wrong, other])
    after = scrape(server.http_url)
    kind = {"kind": "invalid_argument"}
    assert (
        _model(after, "inferd_request_failure_total", **kind)
        - _model(before, "inferd_request_failure_total", **kind)
        == 1
    )
    assert _model(after, "inferd_request_success_total") == _model(before, "inferd_request_success_total")


def test_metrics_agree_with_the_statistics_endpoint(server: RunningServer) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    _infer_simple(http, httpclient, rows=3)  # a batch size of its own in batch_stats
    _infer_simple(http, httpclient, rows=1)
    samples = scrape(server.http_url)
    grpc = grpcclient.InferenceServerClient(server.grpc_url)
    via_grpc = grpc.get_inference_statistics(as_json=True)["model_stats"]
    for stats in http.get_inference_statistics()["model_stats"]:
        labels = {"model": stats["name"], "version": stats["version"]}
        inference = stats["inference_stats"]
        assert value(samples, "inferd_request_success_total", **labels) == inference["success"]["count"]
        assert (
            value(samples, "inferd_request_duration_seconds_count", **labels) == inference["success"]["count"]
        )
        failures = sum(
            v for (name, key), v in samples.items()
            if name == "inferd_request_failure_total" and set(labels.items()) <= key
        )  # fmt: skip
        assert failures == inference["fail"]["count"]
        assert value(samples, "inferd_queue_duration_seconds_count", **labels) == inference["queue"]["count"]
        assert value(samples, "inferd_inferences_total", **labels) == stats["inference_count"]
        assert value(samples, "inferd_executions_total", **labels) == stats["execution_count"]
        per_size = {b["batch_size"]: b["compute_infer"]["count"] for b in stats["batch_stats"]}
        assert sum(per_size.values()) == stats["execution_count"]
        assert sum(size * n for size, n in per_size.items()) == stats["inference_count"]
        for bound in ("1", "2", "4", "8"):
            expected = sum(n for size, n in per_size.items() if size <= int(bound))
            assert value(samples, "inferd_batch_size_bucket", le=bound, **labels) == expected
        same = next(s for s in via_grpc if s["name"] == stats["name"] and s["version"] == stats["version"])
        assert int(same.get("inference_count", 0)) == stats["inference_count"]
        assert len(same.get("batch_stats", [])) == len(stats["batch_stats"])
    simple = next(s for s in http.get_inference_statistics("simple")["model_stats"])
    assert {b["batch_size"] for b in simple["batch_stats"]} >= {1, 3}


def test_busy_time_is_priced(server: RunningServer) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    _infer_simple(http, httpclient, rows=1)
    samples = scrape(server.http_url)
    busy = _model(samples, "inferd_busy_seconds_total")
    cost = _model(samples, "inferd_cost_dollars_total")
    inferences = _model(samples, "inferd_inferences_total")
    assert busy > 0
    assert cost == pytest.approx(busy * PRICE_PER_HOUR / 3600)
    assert _model(samples, "inferd_cost_per_1000_inferences_dollars") == pytest.approx(
        cost / inferences * 1000
    )


def test_process_and_energy_sources_are_reported(server: RunningServer) -> None:
    samples = scrape(server.http_url)
    assert value(samples, "process_resident_memory_bytes") > 0
    # Measured per model at load (Linux /proc): present for every loaded version, never negative.
    loaded = [v for (name, _), v in samples.items() if name == "inferd_model_load_resident_bytes"]
    assert len(loaded) == value(samples, "inferd_models_loaded") and min(loaded) >= 0
    assert ("process_cpu_seconds_total", frozenset()) in samples
    sources = {
        dict(labels)["source"]: (v, dict(labels)["reason"])
        for (name, labels), v in samples.items()
        if name == "inferd_energy_source_info"
    }
    assert set(sources) >= {"rapl", "nvml"}
    for available, reason in sources.values():
        # Present with no reason, or absent with the reason; never a guess.
        assert (available == 1 and reason == "") or (available == 0 and reason)
    if all(available == 0 for available, _ in sources.values()):
        assert not any(name == "inferd_energy_joules_total" for name, _ in samples)


def test_promtool_finds_nothing_to_lint_in_the_exposition(server: RunningServer) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's prometheus package (scripts/test does it)"
    _infer_simple(httpclient.InferenceServerClient(server.http_url), httpclient, rows=1)
    status, _, body = request(server.http_url, "GET", "/metrics")
    assert status == 200
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_undecodable_requests_for_a_served_model_count_as_its_failures(server: RunningServer) -> None:
    import grpc

    from inferd.protocol._generated import grpc_service_pb2 as pb
    from inferd.protocol._generated import grpc_service_pb2_grpc as pb_grpc

    before = scrape(server.http_url)
    status, _, _ = request(server.http_url, "POST", "/v2/models/simple/infer", b"{not json")
    assert status == 400
    with grpc.insecure_channel(server.grpc_url) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as error:
            stub.ModelInfer(pb.ModelInferRequest(model_name="simple"))  # no inputs
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after = scrape(server.http_url)
    kind = {"kind": "invalid_argument"}
    failed = _model(after, "inferd_request_failure_total", **kind) - _model(
        before, "inferd_request_failure_total", **kind
    )
    assert failed == 2
    stats = httpclient.InferenceServerClient(server.http_url).get_inference_statistics("simple")
    fail_count = stats["model_stats"][0]["inference_stats"]["fail"]["count"]
    failures = sum(
        v for (n, k), v in after.items() if n == "inferd_request_failure_total" and ("model", "simple") in k
    )
    assert fail_count == failures
