"""Version policies, model control modes and the model repository extension over REST and gRPC."""

from __future__ import annotations

import threading
from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from httputil import post_json, request
from lifecycleutil import index, lifecycle, wait_until
from onnx import TensorProto
from serverctl import start_server
from tritonclient.utils import InferenceServerException

TIMEOUT_S = 60


def _versions(root: Path, name: str, count: int, config: str | None = None) -> None:
    for version in range(1, count + 1):
        mf.write_model(root, name, lambda p, v=version: mf.add_constant(p, float(v)), version=version)
    if config is not None:
        (root / name / "config.yaml").write_text(config)


def _infer(client: httpclient.InferenceServerClient, model: str, version: str = "") -> tuple[str, float]:
    data = np.zeros((1, 4), dtype=np.float32)
    tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer(model, [tensor], model_version=version)
    return result.get_response()["model_version"], float(result.as_numpy("OUTPUT0")[0, 0])


def test_version_policies(tmp_path: Path) -> None:
    root = tmp_path / "models"
    _versions(root, "default", 3)
    _versions(root, "latest2", 3, "version_policy: {latest: 2}\n")
    _versions(root, "every", 3, "version_policy: all\n")
    _versions(root, "pinned", 3, "version_policy:\n  specific: [1, 2]\n")
    server = start_server(root, tmp_path)
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        ready = {(r["name"], r["version"]) for r in index(server.http_url) if r["state"] == "READY"}
        assert ready == {
            ("default", "3"),
            ("latest2", "2"),
            ("latest2", "3"),
            ("every", "1"),
            ("every", "2"),
            ("every", "3"),
            ("pinned", "1"),
            ("pinned", "2"),
        }
        # Requests without a version go to the highest served version.
        assert _infer(client, "latest2") == ("3", 3.0)
        assert _infer(client, "pinned") == ("2", 2.0)
        # /versions/{v}/ addresses one explicitly; a version outside the policy is not loaded.
        assert _infer(client, "every", "1") == ("1", 1.0)
        assert _infer(client, "latest2", "2") == ("2", 2.0)
        with pytest.raises(InferenceServerException, match="'latest2' version 1 is not found"):
            _infer(client, "latest2", "1")
        assert client.is_model_ready("latest2", "2") and not _ready_or_missing(client, "latest2", "1")
        assert client.get_model_metadata("every")["versions"] == ["1", "2", "3"]
        policies = {
            name: client.get_model_config(name)["version_policy"]
            for name in ("default", "latest2", "every", "pinned")
        }
        assert policies == {
            "default": {"latest": {"num_versions": 1}},
            "latest2": {"latest": {"num_versions": 2}},
            "every": {"all": {}},
            "pinned": {"specific": {"versions": [1, 2]}},
        }
        grpc_config = grpcclient.InferenceServerClient(server.grpc_url).get_model_config(
            "pinned", as_json=True
        )
        assert grpc_config["config"]["version_policy"] == {"specific": {"versions": ["1", "2"]}}
    finally:
        assert server.stop() == 0, server.log()


def _ready_or_missing(client: httpclient.InferenceServerClient, model: str, version: str) -> bool:
    try:
        return bool(client.is_model_ready(model, version))
    except InferenceServerException:
        return False


def test_bad_version_policy_names_the_key(tmp_path: Path) -> None:
    from serverctl import run_server_expecting_exit

    _versions(tmp_path, "m", 1, "version_policy: {latest: 0}\n")
    result = run_server_expecting_exit(tmp_path)
    assert result.returncode != 0
    assert "'version_policy.latest'" in result.stderr


def test_explicit_mode_load_and_unload_over_rest_and_grpc(tmp_path: Path) -> None:
    root = tmp_path / "models"
    _versions(root, "a", 1)
    _versions(root, "b", 2)
    server = start_server(root, tmp_path, "--model-control", "explicit", "--load-model", "a")
    try:
        http = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        assert "model_repository" in http.get_server_metadata()["extensions"]
        assert http.is_model_ready("a")
        assert {"name": "b", "state": "UNAVAILABLE", "reason": "not loaded"} in index(server.http_url)
        with pytest.raises(InferenceServerException, match="Request for unknown model: 'b' is not found"):
            _infer(http, "b")

        grpc.load_model("b")
        assert grpc.is_model_ready("b") and _infer(http, "b") == ("2", 2.0)
        grpc_index = grpc.get_model_repository_index(as_json=True)["models"]
        assert {"name": "b", "version": "2", "state": "READY", "reason": "default version"} in grpc_index
        http.unload_model("b")
        assert not http.is_model_ready("b")
        assert any(
            r == {"name": "b", "version": "2", "state": "UNAVAILABLE", "reason": "unloaded"}
            for r in index(server.http_url)
        )
        with pytest.raises(InferenceServerException, match="not ready"):
            _infer(http, "b")

        # A config override in the load body, as Triton takes it: serve every version of b.
        http.load_model("b", config='{"version_policy": "all"}')
        assert _infer(http, "b", "1") == ("1", 1.0) and http.get_model_config("b")["version_policy"] == {
            "all": {}
        }
        grpc.unload_model("b")
        assert not grpc.is_model_ready("b")
        grpc.load_model("b", config='{"version_policy": {"specific": [1]}}')
        assert _infer(http, "b") == ("1", 1.0)
        grpc.unload_model("b")
        status, body = post_json(server.http_url, "/v2/repository/index", {"ready": True})
        assert status == 200 and {r["name"] for r in body} == {"a"}

        with pytest.raises(InferenceServerException, match="no model 'nope'"):
            grpc.load_model("nope")
        assert http.is_server_ready()
    finally:
        assert server.stop() == 0, server.log()


def test_load_and_unload_are_refused_outside_explicit_mode(tmp_path: Path) -> None:
    _versions(tmp_path / "models", "a", 1)
    server = start_server(tmp_path / "models", tmp_path)
    try:
        for action in ("load", "unload"):
            status, body = post_json(server.http_url, f"/v2/repository/models/a/{action}", {})
            assert status == 400 and "model control mode 'none'" in body["error"]
        status, body = post_json(
            server.http_url, "/v2/repository/models/a/load", {"parameters": {"config": 3}}
        )
        assert status == 400
    finally:
        assert server.stop() == 0, server.log()


def test_unloading_a_model_finishes_its_queued_requests_first(tmp_path: Path) -> None:
    root = tmp_path / "models"
    # One instance, no batching: requests queue up behind each other, ~1 s each (the time is only
    # roughly calibrated, so the test never relies on catching all four in the queue at once).
    mf.write_model(root, "slow", lambda p: mf.slow(p, 1000), config="max_batch_size: 0\n")
    server = start_server(root, tmp_path, "--model-control", "explicit", "--load-model", "slow")
    results: list[object] = []
    lock = threading.Lock()

    def send() -> None:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=120)
        tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((1, 4), dtype=np.float32))
        try:
            outcome: object = client.infer("slow", [tensor]).as_numpy("OUTPUT0")
        except Exception as exc:
            outcome = exc
        with lock:
            results.append(outcome)

    try:
        threads = [threading.Thread(target=send) for _ in range(4)]
        for thread in threads:
            thread.start()

        def all_sent_and_some_queued() -> bool:
            pending = lifecycle(server.http_url, "slow")["versions"]["1"]["pending_requests"]
            with lock:
                finished = len(results)
            # pending >= 2: one running and at least one waiting behind it when the unload comes.
            return pending >= 2 and pending + finished == 4

        wait_until(all_sent_and_some_queued, TIMEOUT_S, "all four sent and some still queued")
        status, _, body = request(server.http_url, "POST", "/v2/repository/models/slow/unload", b"{}")
        assert status == 200, body
        for thread in threads:
            thread.join(timeout=TIMEOUT_S)
        assert len(results) == 4
        for outcome in results:
            assert isinstance(outcome, np.ndarray), outcome
            np.testing.assert_allclose(outcome, np.full((1, 4), 2.0, dtype=np.float32))
        assert lifecycle(server.http_url, "slow")["versions"]["1"] == {
            "state": "unloaded",
            "reason": "unloaded",
        }
    finally:
        assert server.stop() == 0, server.log()


def test_explicit_mode_with_a_model_that_does_not_exist_stops(tmp_path: Path) -> None:
    from serverctl import run_server_expecting_exit

    mf.write_model(tmp_path, "a", lambda p: mf.identity(p, TensorProto.FLOAT))
    result = run_server_expecting_exit(tmp_path, "--model-control", "explicit", "--load-model", "zzz")
    assert result.returncode != 0 and "zzz" in result.stderr


def test_poll_mode_picks_up_config_changes_new_and_removed_models(tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "models"
    _versions(root, "a", 2)
    server = start_server(root, tmp_path, "--model-control", "poll", "--repository-poll-interval", "0.1")
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        assert not _ready_or_missing(client, "a", "1")
        (root / "a" / "config.yaml").write_text("version_policy: all\n")
        wait_until(lambda: _ready_or_missing(client, "a", "1"), TIMEOUT_S, "the new version policy")
        assert client.get_model_config("a")["version_policy"] == {"all": {}}
        assert _infer(client, "a") == ("2", 2.0)

        _versions(root, "c", 1)
        wait_until(lambda: _ready_or_missing(client, "c", ""), TIMEOUT_S, "the new model")
        shutil.rmtree(root / "c")
        wait_until(lambda: not _ready_or_missing(client, "c", ""), TIMEOUT_S, "the removed model to go")
        removed = {
            "name": "c",
            "version": "1",
            "state": "UNAVAILABLE",
            "reason": "removed from the repository",
        }
        # A poll may land while rmtree is half done and record another state first (flaked once in a
        # full run); a later poll sees the directory gone.
        wait_until(
            lambda: next(r for r in index(server.http_url) if r["name"] == "c") == removed,
            TIMEOUT_S,
            "the index to show the model removed from the repository",
        )
        assert client.is_server_ready()
    finally:
        assert server.stop() == 0, server.log()


def test_load_requests_the_server_cannot_honour_are_refused(tmp_path: Path) -> None:
    _versions(tmp_path / "models", "a", 1)
    server = start_server(tmp_path / "models", tmp_path, "--model-control", "explicit")
    try:
        http = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        files = {"file:1/model.onnx": b"\x00"}
        for client in (http, grpc):
            with pytest.raises(InferenceServerException, match="files sent in the request is not supported"):
                client.load_model("a", config="{}", files=files)
        status, body = post_json(server.http_url, "/v2/repository/models/a/load", {"parameters": []})
        assert status == 400 and "'parameters' must be a JSON object" in body["error"]
        status, _, raw = request(server.http_url, "POST", "/v2/repository/models/a/load", b"{not json")
        assert status == 400 and b"not valid JSON" in raw
        status, body = post_json(server.http_url, "/v2/repository/models/a/rollout", {"canary_percent": 5})
        assert status == 400 and "'candidate'" in body["error"]
        assert not _ready_or_missing(http, "a", "")  # none of them loaded anything
    finally:
        assert server.stop() == 0, server.log()
