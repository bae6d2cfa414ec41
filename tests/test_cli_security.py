"""`inferd keys add|hash` and the security flags of `inferd serve`, through the real command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from inferd.cli import _settings_overrides, main
from inferd.security.keys import KeyStore, hash_key
from inferd.security.service import Security
from inferd.settings import Settings


def test_keys_add_appends_a_hashed_entry_and_prints_the_key_once(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    runner = CliRunner()
    first = runner.invoke(main, ["keys", "add", str(path), "--id", "alice", "--models", "mlp, tab*"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(
        main,
        ["keys", "add", str(path), "--id", "bob", "--apis", "*", "--rate", "5", "--daily-quota", "100"],
    )
    assert second.exit_code == 0, second.output
    alice, bob = first.output.strip(), second.output.strip()
    text = path.read_text()
    assert alice not in text and bob not in text  # only hashes at rest
    assert path.stat().st_mode & 0o077 == 0
    entries = yaml.safe_load(text)["keys"]
    assert entries[0] == {
        "id": "alice",
        "hash": hash_key(alice),
        "models": ["mlp", "tab*"],
        "apis": ["inference", "metadata", "health"],
    }
    assert entries[1]["rate"] == 5.0 and entries[1]["daily_quota"] == 100
    store = KeyStore(path)
    principal = store.lookup(bob)
    assert principal is not None and principal.id == "bob" and principal.rate == 5.0


def test_keys_add_refuses_a_duplicate_id_or_an_unknown_api(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    runner = CliRunner()
    assert runner.invoke(main, ["keys", "add", str(path), "--id", "a"]).exit_code == 0
    again = runner.invoke(main, ["keys", "add", str(path), "--id", "a"])
    assert again.exit_code != 0 and "already has a key with id 'a'" in again.output
    unknown = runner.invoke(main, ["keys", "add", str(path), "--id", "b", "--apis", "admin"])
    assert unknown.exit_code != 0 and "unknown apis" in unknown.output
    assert len(yaml.safe_load(path.read_text())["keys"]) == 1


def test_keys_hash_reads_an_argument_or_stdin() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["keys", "hash", "abc"]).output.strip() == hash_key("abc")
    assert runner.invoke(main, ["keys", "hash"], input="abc\n").output.strip() == hash_key("abc")
    assert runner.invoke(main, ["keys", "hash"], input="\n").exit_code != 0


def test_security_flags_map_onto_settings(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys: []\n")
    overrides = _settings_overrides(
        {
            "api_keys": keys,
            "open_health": True,
            "rate_limit": 2.5,
            "rate_burst": 4,
            "daily_quota": 9,
            "rate_limit_redis": "redis://127.0.0.1:1/0",
            "rate_limit_redis_failure": "closed",
            "audit_log": tmp_path / "audit.jsonl",
            "tls_cert": None,
        }
    )
    security = Settings(**overrides).security
    assert security.api_keys_file == keys and security.open_health
    assert (security.rate_limit, security.rate_burst, security.daily_quota) == (2.5, 4, 9)
    assert security.rate_limit_redis_failure == "closed"
    assert security.audit_log == tmp_path / "audit.jsonl" and security.tls_cert_file is None


def test_everything_off_builds_no_gate() -> None:
    security = Security(Settings().security)
    assert security.gate is None and security.tls is None and security.keys is None


def test_keys_can_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    document = json.dumps({"keys": [{"id": "ci", "hash": hash_key("k1")}]})
    monkeypatch.setenv("INFERD_SECURITY__API_KEYS", document)
    security = Security(Settings().security)
    assert security.keys is not None and security.gate is not None
    principal = security.keys.lookup("k1")
    assert principal is not None and principal.id == "ci"


def test_keys_remove_revokes_one_entry(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    runner = CliRunner()
    alice = runner.invoke(main, ["keys", "add", str(path), "--id", "alice"]).output.strip()
    bob = runner.invoke(main, ["keys", "add", str(path), "--id", "bob"]).output.strip()
    removed = runner.invoke(main, ["keys", "remove", str(path), "--id", "alice"])
    assert removed.exit_code == 0, removed.output
    store = KeyStore(path)
    assert store.lookup(alice) is None and store.lookup(bob) is not None
    missing = runner.invoke(main, ["keys", "remove", str(path), "--id", "alice"])
    assert missing.exit_code != 0 and "no key with id 'alice'" in missing.output


def test_a_redis_url_of_another_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_SECURITY__RATE_LIMIT_REDIS", "http://127.0.0.1:6379")
    monkeypatch.setenv("INFERD_SECURITY__RATE_LIMIT", "5")
    with pytest.raises(ValueError, match="redis://"):
        Security(Settings().security)
