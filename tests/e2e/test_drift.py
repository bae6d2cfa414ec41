"""Drift end to end: `inferd profile` writes a reference, a real server scores live inputs against it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.http as httpclient
from metricsutil import Samples, scrape, value
from onnx import TensorProto
from serverctl import RunningServer, start_server

RNG = np.random.default_rng(11)
FEATURES = 4


def _profile(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "inferd", "profile", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _fp32_identity(path: Path) -> None:
    mf.identity(path, TensorProto.FLOAT)


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    mf.write_model(root, "sensor", _fp32_identity, config="max_batch_size: 256\n")
    return root


def _send(server: RunningServer, rows: np.ndarray) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("INPUT0", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32))
    client.infer("sensor", [tensor])


def _wait_for(server: RunningServer, ready: object) -> Samples:
    deadline = time.monotonic() + 30
    while True:
        samples = scrape(server.http_url)
        if ready(samples):  # type: ignore[operator]
            return samples
        assert time.monotonic() < deadline, "drift metrics did not update within 30 s"
        time.sleep(0.05)


def test_profile_command_refuses_data_that_does_not_fit_the_model(repository: Path, tmp_path: Path) -> None:
    data = tmp_path / "bad.npz"
    np.savez(data, WRONG=np.zeros((100, FEATURES), dtype=np.float32))
    result = _profile(str(repository / "sensor"), str(data))
    assert result.returncode == 1
    assert "'WRONG' is not an input of the model (inputs: INPUT0)" in result.stderr


def test_shifted_inputs_raise_the_scores_and_log_a_warning(
    repository: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = tmp_path / "reference.npz"
    np.savez(reference, INPUT0=RNG.normal(size=(4000, FEATURES)).astype(np.float32))
    result = _profile(str(repository / "sensor"), str(reference))
    assert result.returncode == 0, result.stderr
    assert json.loads((repository / "sensor" / "drift_profile.json").read_text())["rows"] == 4000

    for name, setting in (
        ("SAMPLE_EVERY", "1"),
        ("INTERVAL_S", "0.1"),
        ("WINDOW_ROWS", "200"),
        ("MIN_ROWS", "50"),
    ):
        monkeypatch.setenv(f"INFERD_DRIFT__{name}", setting)
    server = start_server(repository, tmp_path)
    try:
        labels = {"model": "sensor", "input": "INPUT0"}
        # One request fills the whole window, so no score is ever taken on a half-updated window.
        _send(server, RNG.normal(size=(200, FEATURES)))
        calm = _wait_for(server, lambda s: value(s, "inferd_drift_window_rows", **labels) == 200)
        for feature in range(FEATURES):
            assert value(calm, "inferd_drift_psi", feature=str(feature), **labels) < 0.2
            assert value(calm, "inferd_drift_ks", feature=str(feature), **labels) < 0.2
        assert value(calm, "inferd_drift_features_over_threshold", model="sensor") == 0

        _send(server, RNG.normal(loc=2.0, size=(200, FEATURES)))
        shifted = _wait_for(
            server, lambda s: value(s, "inferd_drift_features_over_threshold", model="sensor") == FEATURES
        )
        for feature in range(FEATURES):
            assert value(shifted, "inferd_drift_psi", feature=str(feature), **labels) > 1
            assert value(shifted, "inferd_drift_ks", feature=str(feature), **labels) > 0.5
    finally:
        assert server.stop() == 0, server.log()
    warnings = [json.loads(line) for line in server.log().splitlines() if '"event":"drift"' in line]
    assert {w["feature"] for w in warnings if w["level"] == "warning"} == set(range(FEATURES))
    assert all(w["model"] == "sensor" and w["input"] == "INPUT0" for w in warnings)
