"""`inferd optimize --from-traffic --rollout canary:N` against a running server: the live sample the
drift monitor keeps is the gate's data, the new version loads and canaries, and its provenance shows."""

from __future__ import annotations

import json
import time
from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.http as httpclient
from click.testing import CliRunner
from httputil import request
from lifecycleutil import lifecycle, row, wait_until
from serverctl import RunningServer, start_server

from inferd.cli import main
from inferd.drift.profile import build_profile

ROWS = 64


def _send(server: RunningServer, rows: np.ndarray) -> str:
    client = httpclient.InferenceServerClient(server.http_url)
    tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
    tensor.set_data_from_numpy(rows.astype(np.float32))
    return str(client.infer("mlp", [tensor]).get_response()["model_version"])


def _drift_rows(server: RunningServer) -> int:
    status, _, body = request(server.http_url, "GET", "/v2/repository/models/mlp/drift-sample")
    assert status == 200, body
    return len(json.loads(body)["inputs"]["input"])


def test_optimize_from_traffic_writes_a_version_the_server_canaries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model_dir = mf.write_model(tmp_path / "models", "mlp", mf.matmul_mlp, config="max_batch_size: 64\n")
    reference = np.random.default_rng(1).standard_normal((200, 32))
    mf.write_model(model_dir.parent, "plain", mf.matmul_mlp)
    build_profile({"input": reference}, batched=True).save(model_dir / "drift_profile.json")
    for name, setting in (("SAMPLE_EVERY", "1"), ("INTERVAL_S", "0.1"), ("WINDOW_ROWS", "100")):
        monkeypatch.setenv(f"INFERD_DRIFT__{name}", setting)
    server = start_server(model_dir.parent, tmp_path, "--model-control", "explicit", "--load-model", "mlp")
    try:
        url = f"http://{server.http_url}"
        # Before any traffic there is nothing to judge on: refused, nothing written.
        early = CliRunner().invoke(main, ["optimize", str(model_dir), "--from-traffic", "--server", url])
        assert early.exit_code == 1
        assert "no traffic sample: input 'input' has no rows yet" in early.stderr
        assert not (model_dir / "2").exists()
        # A model without a drift profile has no live sample to give.
        status, _, body = request(server.http_url, "GET", "/v2/repository/models/plain/drift-sample")
        assert status == 404 and b"no drift monitor" in body

        assert _send(server, np.random.default_rng(2).standard_normal((ROWS, 32))) == "1"
        wait_until(lambda: _drift_rows(server) == ROWS, 30, "the drift monitor's window to fill")

        result = CliRunner().invoke(
            main,
            [
                "optimize",
                str(model_dir),
                "--from-traffic",
                "--server",
                url,
                "--method",
                "dynamic_int8",
                "--max-drop",
                "0.1",
                "--min-cosine",
                "0.9",
                "--rollout",
                "canary:50",
                "--json",
                "--bench-time",
                "0",
                "--bench-iterations",
                "3",
                "--bench-rounds",
                "1",
                "--min-speedup",
                "0",
            ],
        )
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert report["samples"] == {"origin": f"traffic from {url}", "kind": "traffic", "rows": ROWS}
        assert report["written_version"] == 2

        document = lifecycle(server.http_url, "mlp")
        assert document["rollout"]["candidate_version"] == "2"
        assert document["versions"]["2"]["provenance"]["optimized_method"].startswith("dynamic INT8")
        index_row = row(server.http_url, "mlp", "2")
        assert index_row is not None and index_row["state"] == "READY"
        assert "canary candidate at 50%" in index_row["reason"]
        assert "optimized from version 1 (dynamic_int8)" in index_row["reason"]
        status, _, body = request(server.http_url, "GET", "/v2/models/mlp/versions/2/config")
        assert status == 200
        parameters = json.loads(body)["parameters"]
        assert parameters["optimized_from_version"] == {"string_value": "1"}
        # The canary takes its share of requests that name no version.
        answered = {_send(server, np.ones((1, 32))) for _ in range(8)}
        assert answered == {"1", "2"}
    finally:
        assert server.stop() == 0, server.log()


def test_optimize_rolls_out_on_a_polling_server_through_config_yaml(tmp_path: Path) -> None:
    """Under --model-control poll with version_policy latest 1, a new version the poll finds first
    would become the default: optimize names it in config.yaml before it appears, so the poll that
    finds it starts the canary and version 1 stays the default."""
    config = "# kept as written\nmax_batch_size: 64\nversion_policy: {latest: 1}\n"
    model_dir = mf.write_model(tmp_path / "models", "mlp", mf.matmul_mlp, config=config)
    samples = tmp_path / "samples.npz"
    np.savez(samples, input=np.random.default_rng(3).standard_normal((ROWS, 32)).astype(np.float32))
    server = start_server(
        model_dir.parent, tmp_path, "--model-control", "poll", "--repository-poll-interval", "0.1"
    )
    try:
        url = f"http://{server.http_url}"
        assert lifecycle(server.http_url, "mlp")["model_control"] == "poll"
        arguments = ["optimize", str(model_dir), "--samples", str(samples), "--server", url]
        arguments += ["--method", "dynamic_int8", "--max-drop", "0.1", "--min-cosine", "0.9"]
        arguments += ["--bench-time", "0", "--bench-iterations", "3", "--bench-rounds", "1"]
        arguments += ["--min-speedup", "0"]
        result = CliRunner().invoke(main, [*arguments, "--rollout", "canary:50", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["written_version"] == 2
        assert "canary of version 2 at 50% started" in result.stderr
        written = (model_dir / "config.yaml").read_text()
        assert written.startswith(config) and "rollout:\n  candidate: 2\n  canary_percent: 50\n" in written
        document = lifecycle(server.http_url, "mlp")
        assert document["default_version"] == "1"
        assert document["rollout"]["candidate_version"] == "2"
        assert document["rollout"]["stable_version"] == "1"
        # Later polls keep it so: the policy's latest version is held back while it canaries.
        time.sleep(0.5)
        assert lifecycle(server.http_url, "mlp")["default_version"] == "1"
        answered = {_send(server, np.ones((1, 32))) for _ in range(16)}
        assert answered == {"1", "2"}
    finally:
        assert server.stop() == 0, server.log()
