"""Token budgets (security/tokens.py) on an injected clock, and token quotas in the key file, the
settings and the command line: hostile values are refused at start-up, never served."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from pydantic import ValidationError

from inferd.cli import main
from inferd.errors import RateLimited
from inferd.generative.contract import TokenEvent
from inferd.security.keys import KeyStore, hash_key, parse_key_document
from inferd.security.service import Security
from inferd.security.tokens import TokenAccount, TokenBudgets, metered
from inferd.settings import SecuritySettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _account(budgets: TokenBudgets, caller: str = "alice", limit: int | None = 60) -> TokenAccount:
    refusals: list[str] = []
    return TokenAccount(budgets, caller, caller, limit, lambda: refusals.append(caller))


def test_a_budget_may_be_overdrawn_once_then_refuses_until_refilled() -> None:
    clock = Clock()
    budgets = TokenBudgets(clock)
    account = _account(budgets)  # 60 tokens per minute: one per second
    account.admit()
    account.charge(100)  # a generation runs to its end: 40 tokens of debt
    with pytest.raises(RateLimited) as refused:
        account.admit()
    assert refused.value.retry_after_s == 41 and refused.value.key_id == "alice"
    assert "60 tokens per minute" in refused.value.message
    clock.now += 40.5
    with pytest.raises(RateLimited):  # 0.5 tokens: not one whole token yet
        account.admit()
    clock.now += 0.5
    account.admit()
    clock.now += 3600
    assert dict(account.headers()) == {
        b"x-ratelimit-limit-tokens": b"60",
        b"x-ratelimit-remaining-tokens": b"60",  # refilled to the limit, never beyond
        b"x-ratelimit-reset-tokens": b"0s",
    }
    account.charge(30)
    assert dict(account.headers())[b"x-ratelimit-reset-tokens"] == b"30s"
    assert budgets.charged == {"alice": 130}


def test_callers_have_their_own_buckets_and_unlimited_callers_are_only_counted() -> None:
    budgets = TokenBudgets(Clock())
    alice, bob = _account(budgets, "alice"), _account(budgets, "bob")
    alice.charge(500)
    bob.admit()
    counted = TokenAccount(budgets, "10.0.0.1", None, None, lambda: None)
    counted.charge(10**9)
    counted.admit()
    assert counted.headers() == []
    assert budgets.charged == {"alice": 500} and budgets.charged_without_key == 10**9


def test_without_keys_the_caller_is_the_client_address_and_the_server_limit_applies() -> None:
    gate = Security(SecuritySettings(tokens_per_minute=120)).gate
    assert gate is not None and gate.authenticator is None and gate.tokens is not None
    account = gate.token_account(None, "10.0.0.7", "http", "POST /v1/completions")
    assert account is not None and (account.caller, account.key_id, account.limit) == ("10.0.0.7", None, 120)
    account.charge(500)
    with pytest.raises(RateLimited):
        account.admit()
    assert gate.refusals == {"tokens": 1} and gate.tokens.charged_without_key == 500
    other = gate.token_account(None, "10.0.0.8", "http", "POST /v1/completions")
    assert other is not None
    other.admit()  # another client address, another bucket


def test_full_buckets_are_dropped_past_the_bound() -> None:
    clock = Clock()
    budgets = TokenBudgets(clock, max_buckets=2)
    _account(budgets, "a").charge(1)
    _account(budgets, "b").charge(200)  # over two minutes of debt
    clock.now += 70
    _account(budgets, "c").charge(1)  # "a" is full again and dropped; "b" is still in debt
    with pytest.raises(RateLimited):
        _account(budgets, "b").admit()
    assert len(budgets._buckets) == 2


def test_metered_charges_prompt_and_tokens_as_they_pass() -> None:
    budgets = TokenBudgets(Clock())
    seen: list[tuple[str, str, int, str]] = []
    account = TokenAccount(budgets, "k", "k", 1000, lambda: None, lambda *row: seen.append(row))
    charged: list[int] = []

    async def events() -> AsyncIterator[TokenEvent]:
        for n in (1, 2, 3):
            yield TokenEvent("t", (), "length" if n == 3 else None, 5, n)

    async def consume() -> None:
        stream = metered(account, "m", "1", events())
        async for _ in stream:
            charged.append(budgets.charged["k"])
        await stream.aclose()  # type: ignore[attr-defined]

    asyncio.run(consume())
    assert charged == [6, 7, 8] and seen == [("m", "1", 8, "length")]


@pytest.mark.parametrize("value", [0, -5, True, "100", 1.5, "1e9", 10**13, float("nan"), [1]])
def test_hostile_token_quotas_in_the_key_file_are_refused(value: object) -> None:
    document = yaml.safe_dump({"keys": [{"id": "k", "hash": hash_key("k"), "tokens_per_minute": value}]})
    with pytest.raises(ValueError, match="keys.0.tokens_per_minute"):
        parse_key_document(document, "keys.yaml")


def test_a_key_file_quota_reaches_the_principal() -> None:
    document = yaml.safe_dump({"keys": [{"id": "k", "hash": hash_key("k1"), "tokens_per_minute": 900}]})
    principal = next(iter(parse_key_document(document, "keys.yaml").values()))
    assert principal.tokens_per_minute == 900


@pytest.mark.parametrize("value", [0, -1, 10**13, "many"])
def test_hostile_server_wide_quotas_are_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        SecuritySettings(tokens_per_minute=value)


def test_the_command_line_sets_and_refuses_token_quotas(tmp_path: Path) -> None:
    path = tmp_path / "keys.yaml"
    runner = CliRunner()
    added = runner.invoke(main, ["keys", "add", str(path), "--id", "t", "--tokens-per-minute", "5000"])
    assert added.exit_code == 0, added.output
    principal = KeyStore(path).lookup(added.output.strip())
    assert principal is not None and principal.tokens_per_minute == 5000
    refused = runner.invoke(main, ["keys", "add", str(path), "--id", "u", "--tokens-per-minute", "0"])
    assert refused.exit_code == 2 and "tokens-per-minute" in refused.output
    serve = runner.invoke(main, ["serve", str(tmp_path), "--tokens-per-minute", "-3"])
    assert serve.exit_code == 2 and "tokens-per-minute" in serve.output
