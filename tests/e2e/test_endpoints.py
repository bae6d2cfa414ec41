"""Every REST and gRPC endpoint of the core protocol, through tritonclient."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverctl import RunningServer
from tritonclient.utils import InferenceServerException


@pytest.fixture
def http(server: RunningServer) -> httpclient.InferenceServerClient:
    return httpclient.InferenceServerClient(server.http_url)


@pytest.fixture
def grpc(server: RunningServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(server.grpc_url)


def _simple_inputs(module: object, rows: int = 1) -> tuple[list[object], np.ndarray, np.ndarray]:
    a = np.arange(16 * rows, dtype=np.int32).reshape(rows, 16)
    b = np.full((rows, 16), 3, dtype=np.int32)
    inputs = []
    for name, data in (("INPUT0", a), ("INPUT1", b)):
        tensor = module.InferInput(name, [rows, 16], "INT32")  # type: ignore[attr-defined]
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs, a, b


def test_health(http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient) -> None:
    assert http.is_server_live() and http.is_server_ready()
    assert grpc.is_server_live() and grpc.is_server_ready()


def test_server_metadata_lists_only_real_extensions(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    rest = http.get_server_metadata()
    assert rest["name"] == "inferd"
    assert set(rest["extensions"]) == {
        "model_configuration",
        "statistics",
        "binary_tensor_data",
        "model_repository",
        "system_shared_memory",
        "classification",
        "parameters",
        "logging",
        "trace",
        "sequence",
        "generate",
    }
    assert list(grpc.get_server_metadata().extensions) == rest["extensions"]


def test_model_metadata_includes_the_batch_dimension(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    rest = http.get_model_metadata("simple")
    assert rest["name"] == "simple" and rest["versions"] == ["1"]
    assert rest["inputs"] == [
        {"name": "INPUT0", "datatype": "INT32", "shape": [-1, 16]},
        {"name": "INPUT1", "datatype": "INT32", "shape": [-1, 16]},
    ]
    fixed = http.get_model_metadata("fixed")
    assert fixed["inputs"] == [{"name": "INPUT0", "datatype": "FP32", "shape": [3, 4]}]
    via_grpc = grpc.get_model_metadata("simple", as_json=True)
    assert [list(map(int, t["shape"])) for t in via_grpc["inputs"]] == [[-1, 16], [-1, 16]]


def test_versions_are_addressable_and_the_highest_is_the_default(
    http: httpclient.InferenceServerClient,
) -> None:
    assert http.get_model_metadata("versioned")["versions"] == ["3"]
    assert http.get_model_metadata("versioned", "3")["name"] == "versioned"
    assert http.is_model_ready("versioned", "3")
    data = np.ones((1, 4), np.float32)
    tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(data)
    assert http.infer("versioned", [tensor], model_version="3").get_response()["model_version"] == "3"
    with pytest.raises(
        InferenceServerException, match="Request for unknown model: 'versioned' version 1 is not found"
    ):
        http.infer("versioned", [tensor], model_version="1")


def test_model_ready(http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient) -> None:
    assert http.is_model_ready("simple") and grpc.is_model_ready("simple")
    assert not http.is_model_ready("no_such_model")


def test_model_config_uses_triton_field_names(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    config = http.get_model_config("simple")
    assert config["name"] == "simple"
    assert config["platform"] == "onnxruntime_onnx" and config["backend"] == "onnxruntime"
    assert config["max_batch_size"] == 8
    assert config["input"][0] == {"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [16]}
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 5000
    assert config["instance_group"][0]["count"] == 1
    via_grpc = grpc.get_model_config("simple").config
    assert via_grpc.max_batch_size == 8 and via_grpc.input[0].dims == [16]
    assert "dynamic_batching" not in http.get_model_config("fixed")
    assert grpc.get_model_config("identity_bytes").config.input[0].data_type == 13  # TYPE_STRING


def test_infer_answers_match_numpy_over_both_protocols(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    for module, client in ((httpclient, http), (grpcclient, grpc)):
        inputs, a, b = _simple_inputs(module, rows=3)
        result = client.infer("simple", inputs, request_id="req-7")  # type: ignore[attr-defined]
        np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), a + b)
        np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
        response = result.get_response(as_json=True) if module is grpcclient else result.get_response()
        assert response["id"] == "req-7"


def test_requested_outputs_subset_is_honoured(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    inputs, a, b = _simple_inputs(httpclient)
    result = http.infer("simple", inputs, outputs=[httpclient.InferRequestedOutput("OUTPUT1")])
    assert [o["name"] for o in result.get_response()["outputs"]] == ["OUTPUT1"]
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)
    grpc_inputs, _, _ = _simple_inputs(grpcclient)
    grpc_result = grpc.infer("simple", grpc_inputs, outputs=[grpcclient.InferRequestedOutput("OUTPUT0")])
    assert [o.name for o in grpc_result.get_response().outputs] == ["OUTPUT0"]


def test_model_without_batch_dimension(http: httpclient.InferenceServerClient) -> None:
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    tensor = httpclient.InferInput("INPUT0", [3, 4], "FP32")
    tensor.set_data_from_numpy(data, binary_data=False)
    np.testing.assert_array_equal(http.infer("fixed", [tensor]).as_numpy("OUTPUT0"), data * 2)


def test_statistics_over_both_protocols(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    inputs, _, _ = _simple_inputs(httpclient)
    http.infer("simple", inputs)
    stats = http.get_inference_statistics("simple")["model_stats"][0]
    assert stats["name"] == "simple" and stats["version"] == "1"
    assert stats["inference_stats"]["success"]["count"] >= 1
    for field in (
        "success",
        "fail",
        "queue",
        "compute_input",
        "compute_infer",
        "compute_output",
        "cache_hit",
        "cache_miss",
    ):
        assert set(stats["inference_stats"][field]) == {"count", "ns"}
    assert stats["inference_count"] >= 1 and stats["execution_count"] >= 1
    everything = http.get_inference_statistics()["model_stats"]
    assert {s["name"] for s in everything} >= {"simple", "fixed", "identity_fp32"}
    via_grpc = grpc.get_inference_statistics("simple").model_stats[0]
    assert via_grpc.version == "1" and via_grpc.inference_stats.success.count >= 1


def test_repository_index(
    http: httpclient.InferenceServerClient, grpc: grpcclient.InferenceServerClient
) -> None:
    index = http.get_model_repository_index()
    simple = next(entry for entry in index if entry["name"] == "simple")
    assert simple["state"] == "READY" and simple["version"] == "1"
    assert "simple" in {m.name for m in grpc.get_model_repository_index().models}


def test_grpc_stream_infer_answers_each_request(server: RunningServer) -> None:
    results: list[object] = []
    client = grpcclient.InferenceServerClient(server.grpc_url)
    client.start_stream(callback=lambda result, error: results.append(error or result))
    try:
        for _ in range(3):
            inputs, _, _ = _simple_inputs(grpcclient)
            client.async_stream_infer("simple", inputs)
    finally:
        client.stop_stream()
    assert len(results) == 3
    assert all(isinstance(r, grpcclient.InferResult) for r in results)
