"""Token quotas of generative routes: tokens per minute per caller, counted as OpenAI counts them
(prompt + generated tokens), kept in this process.

A caller's budget is a bucket of ``tokens_per_minute`` tokens refilled continuously (a sixtieth of it
per second). A generation is refused up front (429) while the bucket is empty; admitted, it is charged
each token as it is produced, and may take the bucket below zero: the running stream finishes (cutting
a stream half-way would waste the tokens already paid for and hand the client a broken answer), and the
caller's next requests wait until the debt is refilled. ``max_tokens`` bounds the overdraft.

The front-ends put the caller's ``TokenAccount`` (or what opens it) in ``ACCOUNT`` when they admit a
request; the protocol code of each generative route calls ``admit_tokens`` before it starts a
generation and wraps its token events in ``metered``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass

from inferd.errors import RateLimited
from inferd.generative.contract import TokenEvent
from inferd.security.ratelimit import retry_after

# Past this many buckets, the full ones (the same as a new bucket) are dropped.
_MAX_BUCKETS = 100_000
SECONDS_PER_MINUTE = 60.0
# The most tokens per minute a setting or key may give: far beyond any server, small enough that
# arithmetic on it stays exact in a float.
MAX_TOKENS_PER_MINUTE = 10**12

# (model, version, tokens charged, outcome): called when a metered generation ends.
Recorder = Callable[[str, str, int, str], None]


class TokenBudgets:
    """Buckets per caller (a key id, or the client address without keys) and tokens charged per key.

    Everything runs on the event loop, so there are no locks; the clock is injectable for unit tests.
    """

    def __init__(
        self, monotonic: Callable[[], float] = time.monotonic, max_buckets: int = _MAX_BUCKETS
    ) -> None:
        self._monotonic = monotonic
        self._max_buckets = max_buckets
        # caller -> [balance, time of the balance, limit]
        self._buckets: dict[str, list[float]] = {}
        # key id -> tokens charged since start, for /metrics (key ids only: client addresses would
        # make a label per client).
        self.charged: dict[str, int] = {}
        self.charged_without_key = 0

    def balance(self, caller: str, limit: int) -> float:
        """The caller's balance now (``limit`` when it has no bucket yet; below 0 in debt)."""
        bucket = self._buckets.get(caller)
        if bucket is None:
            return float(limit)
        now = self._monotonic()
        balance = min(float(limit), bucket[0] + (now - bucket[1]) * limit / SECONDS_PER_MINUTE)
        bucket[0], bucket[1], bucket[2] = balance, now, limit  # a key's new limit applies at once
        return balance

    def charge(self, caller: str, key_id: str | None, limit: int | None, tokens: int) -> None:
        if tokens <= 0:
            return
        if key_id is not None:
            self.charged[key_id] = self.charged.get(key_id, 0) + tokens
        else:
            self.charged_without_key += tokens
        if limit is None:
            return
        balance = self.balance(caller, limit)
        bucket = self._buckets.get(caller)
        if bucket is None:
            if len(self._buckets) >= self._max_buckets:
                self._prune()
            bucket = self._buckets[caller] = [balance, self._monotonic(), limit]
        bucket[0] = balance - tokens

    def _prune(self) -> None:
        now = self._monotonic()
        full = [
            caller
            for caller, (balance, at, limit) in self._buckets.items()
            if balance + (now - at) * limit / SECONDS_PER_MINUTE >= limit
        ]
        for caller in full:
            del self._buckets[caller]


@dataclass(slots=True)
class TokenAccount:
    """One admitted request's caller, as the generative routes see it."""

    budgets: TokenBudgets
    caller: str
    key_id: str | None
    limit: int | None  # tokens per minute; None: counted, not limited
    refused: Callable[[], None]  # counts a refusal (the gate's refusals, reason "tokens")
    record: Recorder | None = None  # the audit log's record of a finished generation

    def admit(self) -> None:
        """Raises RateLimited (429, RESOURCE_EXHAUSTED) while the caller's bucket is empty."""
        if self.limit is None:
            return
        balance = self.budgets.balance(self.caller, self.limit)
        if balance >= 1:
            return
        self.refused()
        wait = retry_after((1 - balance) * SECONDS_PER_MINUTE / self.limit)
        raise RateLimited(
            f"token quota exceeded: {self.limit} tokens per minute; retry after {wait} s", wait, self.key_id
        )

    def charge(self, tokens: int) -> None:
        self.budgets.charge(self.caller, self.key_id, self.limit, tokens)

    def headers(self) -> list[tuple[bytes, bytes]]:
        """OpenAI's token rate-limit headers: the limit, what is left, and when it is full again."""
        if self.limit is None:
            return []
        balance = self.budgets.balance(self.caller, self.limit)
        reset_s = (self.limit - balance) * SECONDS_PER_MINUTE / self.limit
        return [
            (b"x-ratelimit-limit-tokens", str(self.limit).encode()),
            (b"x-ratelimit-remaining-tokens", str(max(0, math.floor(balance))).encode()),
            (b"x-ratelimit-reset-tokens", _duration(reset_s).encode()),
        ]


def _duration(seconds: float) -> str:
    """OpenAI's form: '0s', '1.5s', '6m0s'."""
    if seconds < 60:
        return f"{math.ceil(seconds * 1000) / 1000:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


# The current request's account, or what opens it: a REST front-end sets the opener on every inference
# request and only the generative routes open it, so other requests do not pay for an account.
ACCOUNT: ContextVar[TokenAccount | Callable[[], TokenAccount | None] | None] = ContextVar(
    "inferd_token_account", default=None
)


def current_account() -> TokenAccount | None:
    found = ACCOUNT.get()
    if found is None or isinstance(found, TokenAccount):
        return found
    account = found()
    ACCOUNT.set(account)
    return account


def admit_tokens() -> TokenAccount | None:
    """The current request's account, after checking its budget (RateLimited when it is spent)."""
    account = current_account()
    if account is not None:
        account.admit()
    return account


async def metered(
    account: TokenAccount, model: str, version: str, events: AsyncIterator[TokenEvent]
) -> AsyncIterator[TokenEvent]:
    """``events``, each event's new prompt and generated tokens charged to ``account`` as it passes."""
    charged = 0
    outcome = "error"
    try:
        async for token in events:
            total = token.prompt_tokens + token.completion_tokens
            if total > charged:
                account.charge(total - charged)
                charged = total
            if token.finish_reason is not None:
                outcome = token.finish_reason
            yield token
    except (GeneratorExit, asyncio.CancelledError):  # closed after the last event, or its client gone
        if outcome == "error":
            outcome = "cancelled"
        raise
    finally:
        await events.aclose()  # type: ignore[attr-defined]
        if account.record is not None and charged:
            account.record(model, version, charged, outcome)
