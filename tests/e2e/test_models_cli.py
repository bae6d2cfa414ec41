"""`inferd models ...` against a running server."""

from __future__ import annotations

import json
from pathlib import Path

import modelfactory as mf
from click.testing import CliRunner, Result
from serverctl import RunningServer, start_server

from inferd.cli import main


def _cli(url: str, *args: str) -> Result:
    """The real `inferd models` command, run in-process (a subprocess per call is slow on a busy machine)."""
    return CliRunner().invoke(main, ["models", "--url", url, *args])


def _ok(server: RunningServer, *args: str) -> str:
    result = _cli(f"http://{server.http_url}", *args)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_load_status_list_unload(tmp_path: Path) -> None:
    root = tmp_path / "models"
    mf.write_model(root, "m", lambda p: mf.add_constant(p, 1.0))
    override = tmp_path / "override.yaml"
    override.write_text("max_batch_size: 2\nwarmup:\n  - batch_size: 2\n")
    server = start_server(root, tmp_path, "--model-control", "explicit")
    try:
        assert "not loaded" in _ok(server, "list")
        assert _ok(server, "load", "m", "--config", str(override)).strip() == "loaded m"
        listing = _ok(server, "list")
        assert "m" in listing and "READY" in listing and "default version" in listing
        header, row = listing.splitlines()
        assert header.split() == ["MODEL", "VERSION", "STATE", "REASON"]
        assert row.split()[:3] == ["m", "1", "READY"]
        assert header.index("STATE") == row.index("READY")  # the columns line up
        status = json.loads(_ok(server, "status", "m"))
        assert status["default_version"] == "1"
        assert status["versions"]["1"]["cold_start"]["first_inference_ms"] is not None
        assert status["counters"]["loads"] == 1
        assert _ok(server, "unload", "m").strip() == "unloaded m"
        assert json.loads(_ok(server, "status", "m"))["counters"]["unloads"] == 1
        assert "unloaded" in _ok(server, "list")

        failed = _cli(f"http://{server.http_url}", "rollback", "m")
        assert failed.exit_code == 1 and "HTTP 400" in failed.stderr and "no earlier version" in failed.stderr
        no_rollout = _cli(f"http://{server.http_url}", "promote", "m")
        assert no_rollout.exit_code == 1 and "no rollout to promote" in no_rollout.stderr
        missing = _cli(f"http://{server.http_url}", "load", "nope")
        assert missing.exit_code == 1 and "no model 'nope'" in missing.stderr
    finally:
        assert server.stop() == 0, server.log()


def test_an_unreachable_server_is_a_clear_error(tmp_path: Path) -> None:
    result = _cli("http://127.0.0.1:9", "list")
    assert result.exit_code == 1 and "cannot reach http://127.0.0.1:9" in result.stderr


def test_the_api_key_reaches_a_secured_server(tmp_path: Path) -> None:
    import hashlib

    root = tmp_path / "models"
    mf.write_model(root, "m", lambda p: mf.add_constant(p, 1.0))
    key = "lifecycle-operator-key"
    keys = tmp_path / "keys.yaml"
    digest = hashlib.sha256(key.encode()).hexdigest()
    keys.write_text(f"keys:\n  - id: ops\n    hash: sha256:{digest}\n    apis: [repository]\n")
    server = start_server(root, tmp_path, "--api-keys", str(keys))
    try:
        refused = _cli(f"http://{server.http_url}", "list")
        assert refused.exit_code == 1 and "HTTP 401" in refused.stderr
        allowed = CliRunner().invoke(
            main, ["models", "--url", f"http://{server.http_url}", "--api-key", key, "list"]
        )
        assert allowed.exit_code == 0, allowed.stderr
        assert "READY" in allowed.stdout
    finally:
        assert server.stop() == 0, server.log()
