"""Key scopes match model names only: a pattern's '*' never reaches past a path separator."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from inferd.errors import InvalidRequest, PermissionDenied
from inferd.security.apis import Api
from inferd.security.auth import Authenticator
from inferd.security.gate import Access, Gate
from inferd.security.keys import KeyStore, hash_key, new_key
from inferd.security.ratelimit import Limits, LocalLimiter

FRAUD = new_key()


def _gate(tmp_path: Path, limits: Limits | None = None) -> Gate:
    path = tmp_path / "keys.yaml"
    path.write_text(
        f"keys:\n  - id: fraud\n    hash: {hash_key(FRAUD)}\n    models: ['fraud-*']\n"
        "    apis: [inference, repository]\n"
    )
    return Gate(Authenticator(KeyStore(path), False), LocalLimiter(), limits or Limits(), None)


def test_a_wildcard_scope_does_not_match_paths(tmp_path: Path) -> None:
    store = KeyStore(document=f"keys:\n  - id: f\n    hash: {hash_key(FRAUD)}\n    models: ['fraud-*']\n")
    principal = store.lookup(FRAUD)
    assert principal is not None
    assert principal.may_use_model("fraud-a")
    for name in ("fraud-a/../secret", "fraud-/../../etc", "fraud-a/b", "fraud-\x00", "fraud-" + "x" * 200):
        assert not principal.may_use_model(name), name


@pytest.mark.parametrize("name", ["fraud-a/../secret", "fraud-../secret", "..", "fraud-" + "a" * 300])
def test_the_gate_refuses_a_bad_name_before_the_scope_check(tmp_path: Path, name: str) -> None:
    gate = _gate(tmp_path)
    for api in (Api.REPOSITORY, Api.INFERENCE):
        with pytest.raises(InvalidRequest):
            asyncio.run(gate.admit(FRAUD, Access(api, name), "127.0.0.1"))
    with pytest.raises(PermissionDenied):
        asyncio.run(gate.admit(FRAUD, Access(Api.REPOSITORY, "secret"), "127.0.0.1"))
    assert asyncio.run(gate.admit(FRAUD, Access(Api.REPOSITORY, "fraud-a"), "127.0.0.1")) is not None


def test_a_bad_version_is_refused_too(tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    with pytest.raises(InvalidRequest):
        asyncio.run(gate.admit(FRAUD, Access(Api.INFERENCE, "fraud-a", "../1"), "127.0.0.1"))


def test_no_rate_limit_bucket_for_names_that_are_not_names(tmp_path: Path) -> None:
    # Without keys the limiter buckets by client address and model: an alias of a model must not
    # open a fresh bucket.
    limiter = LocalLimiter()
    gate = Gate(None, limiter, Limits(rate=0.001, burst=1), None)
    assert asyncio.run(gate.admit(None, Access(Api.INFERENCE, "m"), "10.0.0.1")) is None
    for alias in ("./m", "m/.", "x/../m"):
        with pytest.raises(InvalidRequest):
            asyncio.run(gate.admit(None, Access(Api.INFERENCE, alias), "10.0.0.1"))
