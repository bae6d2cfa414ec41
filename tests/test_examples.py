"""The bundled example repository builds offline and its models run in onnxruntime."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from inferd.examples import _MLP_CONFIG, build_repository
from inferd.model_config import load_model_config


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("examples")
    assert build_repository(dest) == ["mlp", "tabular", "fraud-sklearn", "fraud-sklearn-onnx"]
    return dest


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_layout_and_configs(repository: Path) -> None:
    for name, max_batch in (("mlp", 64), ("tabular", 128)):
        assert (repository / name / "1" / "model.onnx").is_file()
        assert (repository / name / "config.yaml").read_text().startswith("# ")
        config = load_model_config(repository / name)
        assert config.max_batch_size == max_batch
        assert config.dynamic_batching is not None
        assert config.dynamic_batching.max_queue_delay_ms == 1
        assert config.instances == 1
    mlp = load_model_config(repository / "mlp")
    assert mlp.dynamic_batching is not None
    assert mlp.dynamic_batching.preferred_batch_sizes == (16, 32, 64)


def test_rebuild_keeps_what_is_there(repository: Path) -> None:
    # A version and a config edit the user added survive a rebuild; a removed model is built again.
    added = repository / "mlp" / "2"
    shutil.copytree(repository / "mlp" / "1", added)
    (repository / "mlp" / "config.yaml").write_text("max_batch_size: 8\n")
    shutil.rmtree(repository / "tabular")
    assert build_repository(repository) == ["tabular"]
    assert (added / "model.onnx").read_bytes() == (repository / "mlp" / "1" / "model.onnx").read_bytes()
    assert (repository / "mlp" / "config.yaml").read_text() == "max_batch_size: 8\n"
    assert (repository / "tabular" / "1" / "model.onnx").is_file()
    assert build_repository(repository) == []
    # No staging directory is left behind.
    assert sorted(p.name for p in repository.iterdir()) == [
        "fraud-sklearn",
        "fraud-sklearn-onnx",
        "mlp",
        "tabular",
    ]
    shutil.rmtree(added)
    (repository / "mlp" / "config.yaml").write_text(_MLP_CONFIG)


@pytest.mark.parametrize("batch", [1, 4])
def test_mlp(repository: Path, batch: int) -> None:
    session = _session(repository / "mlp" / "1" / "model.onnx")
    assert session.get_inputs()[0].name == "input"
    assert session.get_inputs()[0].shape == ["batch", 256]
    assert session.get_outputs()[0].shape == ["batch", 10]
    data = np.random.default_rng(0).standard_normal((batch, 256)).astype(np.float32)
    (logits,) = session.run(["logits"], {"input": data})
    assert logits.shape == (batch, 10)
    assert logits.dtype == np.float32
    assert np.isfinite(logits).all()


@pytest.mark.parametrize("batch", [1, 4])
def test_tabular(repository: Path, batch: int) -> None:
    session = _session(repository / "tabular" / "1" / "model.onnx")
    assert session.get_inputs()[0].name == "input"
    assert session.get_inputs()[0].shape == ["batch", 30]
    assert {o.name: o.shape for o in session.get_outputs()} == {
        "label": ["batch"],
        "probabilities": ["batch", 2],
    }
    data = np.random.default_rng(0).standard_normal((batch, 30)).astype(np.float32)
    label, probabilities = session.run(["label", "probabilities"], {"input": data})
    assert label.shape == (batch,)
    assert label.dtype == np.int64
    assert set(label.tolist()) <= {0, 1}
    assert probabilities.shape == (batch, 2)
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(label, probabilities.argmax(axis=1))


def test_fraud_sklearn_is_served_natively_and_as_onnx(repository: Path, tmp_path: Path) -> None:
    import joblib
    import tritonclient.http as httpclient
    from serverctl import start_server

    pipeline = joblib.load(repository / "fraud-sklearn" / "1" / "model.joblib")
    assert [type(step).__name__ for _, step in pipeline.steps] == [
        "StandardScaler",
        "GradientBoostingClassifier",
    ]
    rows = np.random.default_rng(1).standard_normal((5, 30)).astype(np.float32)
    server = start_server(repository, tmp_path)
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        for model, runtime in (("fraud-sklearn", "native"), ("fraud-sklearn-onnx", "onnxruntime")):
            parameters = client.get_model_config(model)["parameters"]
            assert parameters["runtime"]["string_value"] == runtime
            tensor = httpclient.InferInput("input", [5, 30], "FP32")
            tensor.set_data_from_numpy(rows)
            result = client.infer(model, [tensor])
            np.testing.assert_array_equal(result.as_numpy("predict"), pipeline.predict(rows))
            np.testing.assert_allclose(
                result.as_numpy("predict_proba"), pipeline.predict_proba(rows), atol=1e-5
            )
    finally:
        assert server.stop() == 0, server.log()
