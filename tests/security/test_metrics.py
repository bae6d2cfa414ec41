"""The gate's Prometheus counters, rendered through a real registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from inferd.errors import RateLimited, Unauthenticated
from inferd.security.apis import Api
from inferd.security.audit import AuditLog
from inferd.security.auth import Authenticator
from inferd.security.gate import Access, Gate
from inferd.security.keys import KeyStore, hash_key, new_key
from inferd.security.metrics import SecurityCollector
from inferd.security.ratelimit import Limits, LocalLimiter


def test_refusals_are_counted_by_reason(tmp_path: Path) -> None:
    key = new_key()
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"keys:\n  - id: a\n    hash: {hash_key(key)}\n")
    audit = AuditLog(tmp_path / "audit.jsonl")
    gate = Gate(Authenticator(KeyStore(keys), False), LocalLimiter(), Limits(0.001, 1), audit)
    registry = CollectorRegistry()
    registry.register(SecurityCollector(gate))
    inference = Access(Api.INFERENCE, "m")

    async def scenario() -> None:
        for credential in (None, "wrong"):
            with pytest.raises(Unauthenticated):
                await gate.admit(credential, inference, "c")
        await gate.admit(key, inference, "c")
        with pytest.raises(RateLimited):
            await gate.admit(key, inference, "c")
        await audit.close()

    asyncio.run(scenario())
    text = generate_latest(registry).decode()
    assert 'inferd_security_refusals_total{reason="unauthenticated"} 2.0' in text
    assert 'inferd_security_refusals_total{reason="rate"} 1.0' in text
    assert "inferd_audit_records_dropped_total 0.0" in text
    assert "redis" not in text  # no Redis limiter configured
