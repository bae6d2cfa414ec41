"""Single-model mode (``--model-name``, what KServe runs): a model directory, bare or with version
directories, or a whole repository, served as the one named model; nothing written under it."""

from __future__ import annotations

import os
from pathlib import Path

import modelfactory as mf
import numpy as np
import tritonclient.http as httpclient
from httputil import post_json, request
from serverctl import RunningServer, run_server_expecting_exit, start_server

CONFIG = "max_batch_size: 8\n"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` with its size and modification time: what a write would change."""
    found = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            stat = os.lstat(os.path.join(directory, name))
            found[os.path.relpath(os.path.join(directory, name), root)] = (stat.st_size, stat.st_mtime_ns)
    return found


def _infer(server: RunningServer, name: str, version: str = "") -> np.ndarray:
    client = httpclient.InferenceServerClient(server.http_url)
    data = np.arange(4, dtype=np.float32).reshape(1, 4)
    tensor = httpclient.InferInput("INPUT0", [1, 4], "FP32")
    tensor.set_data_from_numpy(data)
    result = client.infer(name, [tensor], model_version=version).as_numpy("OUTPUT0")
    assert result is not None
    return result - data


def _serve_one(model_dir: Path, workdir: Path, name: str, *extra: str) -> dict[str, object]:
    """Serve ``model_dir`` as ``name``: what each version answers, once the repository index showed
    that one model and a load request for any other name was refused; the files are unchanged."""
    before = _tree(model_dir)
    server = start_server(model_dir, workdir, "--model-name", name, *extra)
    try:
        status, index = post_json(server.http_url, "/v2/repository/index", {})
        assert status == 200
        assert {m["name"] for m in index} == {name}
        served = {
            m["version"]: _infer(server, name, m["version"])[0, 0] for m in index if m["state"] == "READY"
        }
        assert request(server.http_url, "GET", f"/v2/models/{name}/ready")[0] == 200
        # The view lets one symlink out of its repository; any other name is a model it lacks.
        for other in ("other", model_dir.name, "..", "tmp"):
            assert post_json(server.http_url, f"/v2/repository/models/{other}/load", {})[0] in {400, 404}
    finally:
        assert server.stop() == 0
    assert _tree(model_dir) == before
    return served


def test_a_bare_model_directory_serves_as_version_1(tmp_path: Path) -> None:
    model_dir = tmp_path / "mnt" / "models"
    mf.add_constant(model_dir / "model.onnx", 5.0)
    (model_dir / "config.yaml").write_text(CONFIG)
    explicit = ("--model-control", "explicit", "--load-model", "my-model")
    assert _serve_one(model_dir, tmp_path, "my-model", *explicit) == {"1": 5.0}


def test_a_directory_of_versions_serves_its_versions(tmp_path: Path) -> None:
    model_dir = tmp_path / "models"
    for version in (1, 2):
        mf.add_constant(model_dir / str(version) / "model.onnx", float(version))
    (model_dir / "config.yaml").write_text(CONFIG + "version_policy: {all: true}\n")
    assert _serve_one(model_dir, tmp_path, "mlp") == {"1": 1.0, "2": 2.0}


def test_a_whole_repository_holding_the_named_model_serves_as_it_is(tmp_path: Path) -> None:
    repository = tmp_path / "models"
    mf.write_model(repository, "ensemble-like", lambda p: mf.add_constant(p, 3.0), config=CONFIG)
    mf.write_model(repository, "step", lambda p: mf.add_constant(p, 4.0), config=CONFIG)
    server = start_server(repository, tmp_path, "--model-name", "ensemble-like")
    try:
        assert _infer(server, "ensemble-like")[0, 0] == 3.0
        assert _infer(server, "step")[0, 0] == 4.0
    finally:
        assert server.stop() == 0


def test_a_model_name_that_is_not_one_is_refused_at_start(tmp_path: Path) -> None:
    mf.add_constant(tmp_path / "model.onnx", 1.0)
    result = run_server_expecting_exit(tmp_path, "--model-name=../etc")
    assert result.returncode == 1
    assert "is not a model name" in result.stderr


def test_the_repository_is_given_once(tmp_path: Path) -> None:
    result = run_server_expecting_exit(tmp_path, "--model-repository", str(tmp_path))
    assert result.returncode == 2
    assert "give the model repository once" in result.stderr
