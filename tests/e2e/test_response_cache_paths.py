"""The response cache over both front-ends: entries are per API key unless shared on purpose, and a
canary rollout keeps the cache, REST and gRPC answering from the same entries (one infer path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import modelfactory as mf
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serverctl import RunningServer, start_server

from inferd.security.keys import hash_key, new_key

ADMIN, ALICE, BOB = new_key(), new_key(), new_key()
CACHED = "max_batch_size: 8\nresponse_cache: true\n"


def _keys(path: Path) -> Path:
    path.write_text(
        "keys:\n"
        f"  - id: admin\n    hash: {hash_key(ADMIN)}\n    apis: ['*']\n"
        f"  - id: alice\n    hash: {hash_key(ALICE)}\n    apis: [inference]\n"
        f"  - id: bob\n    hash: {hash_key(BOB)}\n    apis: [inference]\n"
    )
    return path


def _infer(server: RunningServer, protocol: str, value: float, key: str | None = None) -> str:
    """One request with a fixed input; returns the version that answered (checking the answer)."""
    module: Any = httpclient if protocol == "http" else grpcclient
    url = server.http_url if protocol == "http" else server.grpc_url
    data = np.full((1, 4), value, dtype=np.float32)
    tensor = module.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(data)
    # gRPC metadata keys are lower-case.
    headers = {"authorization": f"Bearer {key}"} if key is not None else None
    result = module.InferenceServerClient(url).infer("m", [tensor], headers=headers)
    response = result.get_response()
    version = response["model_version"] if protocol == "http" else response.model_version
    np.testing.assert_allclose(result.as_numpy("OUTPUT0") - data, float(version), atol=1e-5)
    return str(version)


def _hits_and_misses(server: RunningServer, key: str | None = None) -> tuple[int, int]:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else None
    client = httpclient.InferenceServerClient(server.http_url)
    stats = client.get_inference_statistics("m", headers=headers)["model_stats"]
    inference = [s["inference_stats"] for s in stats]
    return sum(i["cache_hit"]["count"] for i in inference), sum(i["cache_miss"]["count"] for i in inference)


def _keyed_server(tmp_path: Path, *flags: str) -> RunningServer:
    mf.write_model(tmp_path / "models", "m", lambda p: mf.add_constant(p, 1.0), config=CACHED)
    return start_server(
        tmp_path / "models", tmp_path, "--api-keys", str(_keys(tmp_path / "keys.yaml")), *flags
    )


def test_with_api_keys_a_key_never_hits_another_keys_entry(tmp_path: Path) -> None:
    server = _keyed_server(tmp_path)
    try:
        _infer(server, "http", 1.5, ALICE)
        _infer(server, "http", 1.5, BOB)  # the same input from another key: computed again
        assert _hits_and_misses(server, ADMIN) == (0, 2)
        _infer(server, "grpc", 1.5, ALICE)  # the key's own entry, over either protocol
        _infer(server, "grpc", 1.5, BOB)
        assert _hits_and_misses(server, ADMIN) == (2, 2)
    finally:
        assert server.stop() == 0, server.log()


def test_sharing_across_keys_is_an_option(tmp_path: Path) -> None:
    server = _keyed_server(tmp_path, "--cache-share-across-keys")
    try:
        _infer(server, "http", 2.5, ALICE)
        _infer(server, "grpc", 2.5, BOB)
        _infer(server, "http", 2.5, BOB)
        assert _hits_and_misses(server, ADMIN) == (2, 1)
    finally:
        assert server.stop() == 0, server.log()


def test_a_canary_rollout_answers_rest_and_grpc_from_the_same_cache_entries(tmp_path: Path) -> None:
    root = tmp_path / "models"
    rollout = "rollout: {candidate: 2, canary_percent: 50, guard: {min_requests: 1000000}}\n"
    model_dir = mf.write_model(root, "m", lambda p: mf.add_constant(p, 1.0), config=CACHED + rollout)
    mf.add_constant(model_dir / "2" / "model.onnx", 2.0)
    server = start_server(root, tmp_path)
    try:
        # The split alternates stable, candidate: each version computes once (over REST) and then
        # answers the same input from its cache entry (over gRPC).
        versions = [_infer(server, "http", 3.5), _infer(server, "http", 3.5)]
        versions += [_infer(server, "grpc", 3.5), _infer(server, "grpc", 3.5)]
        assert sorted(versions) == ["1", "1", "2", "2"]
        assert _hits_and_misses(server) == (2, 2)
    finally:
        assert server.stop() == 0, server.log()
