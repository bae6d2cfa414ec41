"""The Ray Serve application's options, without a cluster: what Ray is asked for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from inferd.ray.app import Deployment, Scaling, build_app


def test_fixed_replicas_and_autoscaling_become_ray_options() -> None:
    assert Scaling(replicas=2).options() == {"max_ongoing_requests": 256, "num_replicas": 2}
    autoscaled = Scaling(replicas=None, min_replicas=1, max_replicas=3, target_ongoing_requests=8).options()
    assert autoscaled["autoscaling_config"]["max_replicas"] == 3
    assert autoscaled["autoscaling_config"]["target_ongoing_requests"] == 8
    assert "num_replicas" not in autoscaled


def test_replicas_open_no_ports_of_their_own(tmp_path: Path) -> None:
    settings = Deployment(tmp_path, settings={"grpc": {"max_message_bytes": 4096}}).replica_settings()
    assert settings["grpc"] == {"max_message_bytes": 4096, "enabled": False}
    assert settings["model_repository"] == str(tmp_path.resolve())


def test_the_config_file_builder_refuses_unknown_or_missing_args(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown args"):
        build_app({"model_repository": str(tmp_path), "replica": 2})
    with pytest.raises(ValueError, match="model_repository is required"):
        build_app({"replicas": 2})


def test_the_shipped_serve_config_builds(tmp_path: Path) -> None:
    import yaml

    config = yaml.safe_load(Path("deploy/ray/serve-config.yaml").read_text())
    (application,) = config["applications"]
    assert application["import_path"] == "inferd.ray.app:build_app"
    assert config["grpc_options"]["grpc_servicer_functions"] == ["inferd.grpc.handlers.add_servicer"]
    build_app({**application["args"], "model_repository": str(tmp_path)})


def test_without_ray_the_command_says_which_extra_to_install(tmp_path: Path) -> None:
    code = "import sys; sys.modules['ray'] = None; from inferd.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "ray", "deploy", str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 1
    assert done.stderr.strip() == "inferd ray: Ray Serve is not installed: pip install 'inferd[ray]'"
