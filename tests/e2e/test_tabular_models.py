"""scikit-learn, XGBoost and LightGBM models served for real: numpy-reference outputs over tritonclient
HTTP and gRPC, the ``outputs`` selection, batching, and the conversion (or its fallback) reported."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tabularmodels as tm
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverctl import RunningServer, start_server

BATCHING = "max_batch_size: 64\ndynamic_batching:\n  max_queue_delay_ms: 5\n"

# name -> (builder, extra config): every platform, classifier and regressor, converted and native.
MODELS: dict[str, tuple[Callable[[Path], tm.Trained], str]] = {
    "sklearn-classifier": (tm.sklearn_classifier, ""),
    "sklearn-classifier-native": (tm.sklearn_classifier, "sklearn: {convert: never}\n"),
    "sklearn-regressor": (tm.sklearn_regressor, ""),
    "sklearn-unconvertible": (tm.sklearn_unconvertible, ""),
    "xgboost-classifier": (tm.xgboost_classifier, ""),
    "xgboost-classifier-native": (tm.xgboost_classifier, "xgboost: {convert: never}\n"),
    "xgboost-regressor": (tm.xgboost_regressor, ""),
    "lightgbm-classifier": (tm.lightgbm_classifier, ""),
    "lightgbm-classifier-native": (tm.lightgbm_classifier, "lightgbm: {convert: never}\n"),
    "lightgbm-regressor": (tm.lightgbm_regressor, ""),
    "lightgbm-disagreeing": (tm.lightgbm_disagreeing, ""),
}


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def trained(repository: Path) -> dict[str, tm.Trained]:
    models = {}
    for name, (build, extra) in MODELS.items():
        models[name] = build(repository / name / "1")
        (repository / name / "config.yaml").write_text(BATCHING + extra)
    return models


@pytest.fixture(scope="module")
def server(
    repository: Path, trained: dict[str, tm.Trained], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    running = start_server(repository, tmp_path_factory.mktemp("server"))
    yield running
    assert running.stop() == 0, running.log()


def _infer_http(
    server: RunningServer, model: str, rows: np.ndarray, outputs: list[str] | None = None
) -> dict[str, np.ndarray]:
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows, binary_data=True)
    requested = [httpclient.InferRequestedOutput(n) for n in outputs] if outputs else None
    answer = client.infer(model, [tensor], outputs=requested)
    return {o["name"]: answer.as_numpy(o["name"]) for o in answer.get_response()["outputs"]}


def _infer_grpc(server: RunningServer, model: str, rows: np.ndarray) -> dict[str, np.ndarray]:
    client = grpcclient.InferenceServerClient(server.grpc_url)
    tensor = grpcclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows)
    answer = client.infer(model, [tensor])
    return {o.name: answer.as_numpy(o.name) for o in answer.get_response().outputs}


def _check(trained: tm.Trained, rows: np.ndarray, got: dict[str, np.ndarray]) -> None:
    expected = tm.reference(trained, rows)
    assert set(got) == set(expected)
    if trained.classifier:
        assert np.array_equal(got["predict"], expected["predict"])
        assert got["predict_proba"].dtype == np.float32
        np.testing.assert_allclose(got["predict_proba"], expected["predict_proba"], atol=1e-5)
    else:
        assert got["predict"].dtype == np.float32
        np.testing.assert_allclose(got["predict"], expected["predict"], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_every_model_answers_the_native_reference_over_http_and_grpc(
    server: RunningServer, trained: dict[str, tm.Trained], model: str
) -> None:
    rows = trained[model].rows[:17]
    _check(trained[model], rows, _infer_http(server, model, rows))
    _check(trained[model], rows, _infer_grpc(server, model, rows))


@pytest.mark.parametrize("model", ["sklearn-classifier", "sklearn-classifier-native", "lightgbm-classifier"])
def test_outputs_select_what_comes_back(
    server: RunningServer, trained: dict[str, tm.Trained], model: str
) -> None:
    rows = trained[model].rows[:3]
    only = _infer_http(server, model, rows, ["predict_proba"])
    assert set(only) == {"predict_proba"}
    np.testing.assert_allclose(
        only["predict_proba"], tm.reference(trained[model], rows)["predict_proba"], atol=1e-5
    )
    assert set(_infer_http(server, model, rows, ["predict"])) == {"predict"}


def _config_parameters(server: RunningServer, model: str) -> tuple[dict[str, str], dict[str, str]]:
    http = httpclient.InferenceServerClient(server.http_url).get_model_config(model)
    via_grpc = grpcclient.InferenceServerClient(server.grpc_url).get_model_config(model).config
    return (
        {k: v["string_value"] for k, v in http["parameters"].items()},
        {k: v.string_value for k, v in via_grpc.parameters.items()},
    )


@pytest.mark.parametrize(
    ("model", "runtime", "says"),
    [
        ("xgboost-classifier", "onnxruntime", "converted with onnxmltools; agrees with the native"),
        ("sklearn-classifier-native", "native", "convert: never"),
        ("sklearn-unconvertible", "native", "skl2onnx cannot convert the NearestCentroid"),
        ("lightgbm-disagreeing", "native", "onnxmltools conversion disagrees with the native LightGBM"),
    ],
)
def test_config_and_metadata_report_what_serves_and_why(
    server: RunningServer, model: str, runtime: str, says: str
) -> None:
    for parameters in _config_parameters(server, model):
        assert parameters["runtime"] == runtime
        assert says in parameters["conversion"]
    metadata = httpclient.InferenceServerClient(server.http_url).get_model_metadata(model)
    assert metadata["parameters"]["runtime"] == runtime
    config = httpclient.InferenceServerClient(server.http_url).get_model_config(model)
    platform = model.split("-")[0]
    assert (config["platform"], config["backend"], metadata["platform"]) == (platform, platform, platform)


def test_a_fallback_is_logged_with_its_reason(server: RunningServer) -> None:
    log = server.log()
    assert "serving the native model: the onnxmltools conversion disagrees" in log
    assert "serving the native model: skl2onnx cannot convert the NearestCentroid" in log


@pytest.mark.parametrize(
    "model",
    ["sklearn-classifier", "sklearn-classifier-native", "xgboost-regressor", "lightgbm-classifier-native"],
)
def test_concurrent_requests_are_batched(
    server: RunningServer, trained: dict[str, tm.Trained], model: str
) -> None:
    http = httpclient.InferenceServerClient(server.http_url)
    before = http.get_inference_statistics(model)["model_stats"][0]
    rows = [trained[model].rows[i : i + 1] for i in range(64)]
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda r: _infer_grpc(server, model, r), rows))
    for got, r in zip(answers, rows, strict=True):
        _check(trained[model], r, got)
    after = http.get_inference_statistics(model)["model_stats"][0]
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == 64
    assert executions < inferences
