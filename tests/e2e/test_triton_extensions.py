"""Triton's classification, logging and trace extensions through tritonclient, REST and gRPC."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from httputil import post_json
from onnx import TensorProto
from serverctl import RunningServer, start_server
from tritonclient.utils import InferenceServerException

BATCHING = "max_batch_size: 8\n"
LABELS = ["cat", "dog", "emu", "fox", "gnu"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    root = tmp_path_factory.mktemp("models")
    five = lambda p: mf.identity(p, TensorProto.FLOAT, dims=(5,))  # noqa: E731
    in_version = mf.write_model(root, "classes", five, config=BATCHING)
    (in_version / "1" / "labels.txt").write_text("\n".join(LABELS) + "\n")
    beside_config = mf.write_model(
        root, "classes_unbatched", lambda p: mf.identity(p, TensorProto.INT32, False, (5,))
    )
    (beside_config / "labels.txt").write_text("a\nb\n")
    mf.write_model(root, "strings", lambda p: mf.identity(p, TensorProto.STRING), config=BATCHING)
    running = start_server(Path(root), tmp_path_factory.mktemp("server"))
    yield running
    assert running.stop() == 0, running.log()


@pytest.fixture(params=["http", "grpc"])
def client(request: pytest.FixtureRequest, server: RunningServer) -> Any:
    if request.param == "http":
        return httpclient.InferenceServerClient(server.http_url.removeprefix("http://"))
    return grpcclient.InferenceServerClient(server.grpc_url)


def _module(client: Any) -> Any:
    return httpclient if isinstance(client, httpclient.InferenceServerClient) else grpcclient


def _infer(client: Any, model: str, data: np.ndarray, datatype: str, count: int) -> np.ndarray:
    module = _module(client)
    tensor = module.InferInput("INPUT0", list(data.shape), datatype)
    tensor.set_data_from_numpy(data)
    result = client.infer(
        model, [tensor], outputs=[module.InferRequestedOutput("OUTPUT0", class_count=count)]
    )
    return result.as_numpy("OUTPUT0")


def test_top_k_classes_per_row_with_labels(client: Any) -> None:
    scores = np.array([[0.1, 0.9, 0.3, 0.7, 0.2], [5, 4, 3, 2, 1]], dtype=np.float32)
    classes = _infer(client, "classes", scores, "FP32", 2)
    assert classes.shape == (2, 2)
    assert [c.decode() for c in classes[0]] == ["0.900000:1:dog", "0.700000:3:fox"]
    assert [c.decode() for c in classes[1]] == ["5.000000:0:cat", "4.000000:1:dog"]


def test_labels_beside_the_config_and_indices_past_them(client: Any) -> None:
    classes = _infer(client, "classes_unbatched", np.array([3, 9, 1, 9, 0], dtype=np.int32), "INT32", 9)
    # K beyond the class count returns them all; ties keep the lower index first.
    assert [c.decode() for c in classes] == ["9:1:b", "9:3", "3:0:a", "1:2", "0:4"]


def test_classification_is_refused_where_it_cannot_apply(client: Any, server: RunningServer) -> None:
    strings = np.array([[b"a", b"b", b"c", b"d"]], dtype=object)
    with pytest.raises(InferenceServerException, match="classification needs a numeric output"):
        _infer(client, "strings", strings, "BYTES", 1)
    body = {
        "inputs": [{"name": "INPUT0", "datatype": "FP32", "shape": [1, 5], "data": [1, 2, 3, 4, 5]}],
        "outputs": [{"name": "OUTPUT0", "parameters": {"classification": -1}}],
    }
    status, answer = post_json(server.http_url, "/v2/models/classes/infer", body)
    assert status == 400 and "classification must be an integer" in answer["error"]


def test_log_settings_read_and_changed_at_run_time(client: Any) -> None:
    def settings() -> dict[str, Any]:
        got = (
            client.get_log_settings(as_json=True)
            if _module(client) is grpcclient
            else client.get_log_settings()
        )
        values = got.get("settings", got)
        return {k: next(iter(v.values())) if isinstance(v, dict) else v for k, v in values.items()}

    before = settings()
    assert before["log_info"] is True and before["log_format"] in ("json", "text")
    client.update_log_settings({"log_verbose_level": 1})
    assert int(settings()["log_verbose_level"]) == 1
    client.update_log_settings({"log_verbose_level": 0, "log_info": False})
    now = settings()
    assert now["log_info"] is False and now["log_warning"] is True
    with pytest.raises(InferenceServerException, match="log_file cannot be set"):
        client.update_log_settings({"log_file": "/tmp/elsewhere.log"})
    client.update_log_settings({"log_info": True})
    assert settings()["log_info"] is True


def test_trace_settings_without_an_exporter(client: Any) -> None:
    module = _module(client)
    got = client.get_trace_settings(as_json=True) if module is grpcclient else client.get_trace_settings()
    values = got.get("settings", got)
    level = values["trace_level"]
    assert (level["value"] if isinstance(level, dict) else level) == ["OFF"]
    with pytest.raises(InferenceServerException, match="tracing is off in this server"):
        client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"]})
    if module is grpcclient:
        updated = client.update_trace_settings(
            model_name="classes", settings={"trace_rate": "10"}, as_json=True
        )
    else:
        updated = client.update_trace_settings(model_name="classes", settings={"trace_rate": "10"})
    rate = updated.get("settings", updated)["trace_rate"]
    assert (rate["value"] if isinstance(rate, dict) else rate) in ("10", ["10"])
    with pytest.raises(InferenceServerException, match="Request for unknown model: 'nope' is not found"):
        client.get_trace_settings(model_name="nope")
