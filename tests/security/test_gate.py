"""The Gate: 401 vs 403 vs 429 in order, per-key limits over the defaults, open health."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from inferd.errors import PermissionDenied, RateLimited, Unauthenticated
from inferd.security.apis import Api
from inferd.security.auth import Authenticator, bearer_or_api_key
from inferd.security.gate import Access, Gate
from inferd.security.keys import KeyStore, hash_key, new_key
from inferd.security.ratelimit import Limits, LocalLimiter

ALICE, BOB = new_key(), new_key()


def _gate(tmp_path: Path, open_health: bool = False, limits: Limits | None = None) -> Gate:
    path = tmp_path / "keys.yaml"
    path.write_text(
        "keys:\n"
        f"  - id: alice\n    hash: {hash_key(ALICE)}\n    models: ['simple']\n    apis: [inference]\n"
        f"  - id: bob\n    hash: {hash_key(BOB)}\n    rate: 0.001\n    burst: 2\n"
    )
    authenticator = Authenticator(KeyStore(path), open_health)
    return Gate(authenticator, LocalLimiter(), limits or Limits(), None)


def _admit(gate: Gate, credential: str | None, access: Access, client: str = "1.2.3.4") -> str | None:
    principal = asyncio.run(gate.admit(credential, access, client))
    return principal.id if principal else None


def test_credentials_come_from_bearer_or_x_api_key() -> None:
    assert bearer_or_api_key("Bearer abc", None) == "abc"
    assert bearer_or_api_key("bearer  abc ", "other") == "abc"
    assert bearer_or_api_key("Basic abc", "xyz") == "xyz"
    assert bearer_or_api_key(None, None) is None
    assert bearer_or_api_key("Bearer ", None) is None


def test_missing_or_unknown_key_is_401_known_but_not_allowed_is_403(tmp_path: Path) -> None:
    gate = _gate(tmp_path)
    inference = Access(Api.INFERENCE, "simple")
    with pytest.raises(Unauthenticated):
        _admit(gate, None, inference)
    with pytest.raises(Unauthenticated) as unknown:
        _admit(gate, "not-a-key", inference)
    assert "not-a-key" not in unknown.value.message  # never echoed
    assert _admit(gate, ALICE, inference) == "alice"
    with pytest.raises(PermissionDenied) as wrong_model:
        _admit(gate, ALICE, Access(Api.INFERENCE, "other"))
    assert wrong_model.value.key_id == "alice"
    with pytest.raises(PermissionDenied):
        _admit(gate, ALICE, Access(Api.METADATA, "simple"))
    with pytest.raises(PermissionDenied):
        _admit(gate, ALICE, Access(Api.HEALTH))
    assert _admit(gate, ALICE, Access(None)) == "alice"  # unknown route: authenticated, then 404


def test_open_health_needs_no_key(tmp_path: Path) -> None:
    gate = _gate(tmp_path, open_health=True)
    assert _admit(gate, None, Access(Api.HEALTH)) is None
    with pytest.raises(Unauthenticated):
        _admit(gate, None, Access(Api.METADATA))


def test_per_key_limits_override_the_defaults(tmp_path: Path) -> None:
    gate = _gate(tmp_path, limits=Limits(rate=0.001, burst=1))
    inference = Access(Api.INFERENCE, "simple")
    assert _admit(gate, ALICE, inference) == "alice"
    with pytest.raises(RateLimited) as alice_limited:  # the default burst of 1
        _admit(gate, ALICE, inference)
    assert alice_limited.value.key_id == "alice" and alice_limited.value.retry_after_s >= 1
    assert _admit(gate, BOB, inference) == "bob"
    assert _admit(gate, BOB, inference) == "bob"  # bob's own burst of 2
    with pytest.raises(RateLimited):
        _admit(gate, BOB, inference)
    # Metadata is not rate-limited.
    assert _admit(gate, BOB, Access(Api.METADATA, "simple")) == "bob"


def test_without_keys_callers_are_limited_by_address() -> None:
    gate = Gate(None, LocalLimiter(), Limits(rate=0.001, burst=1), None)
    inference = Access(Api.INFERENCE, "m")
    assert _admit(gate, None, inference, "10.0.0.1") is None
    with pytest.raises(RateLimited):
        _admit(gate, None, inference, "10.0.0.1")
    assert _admit(gate, None, inference, "10.0.0.2") is None
