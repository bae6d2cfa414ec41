"""The one object the front-ends call: authenticate, authorize, rate-limit, then audit the outcome.

A front-end holds ``None`` instead of a Gate when every feature here is off, so it costs nothing then.
"""

from __future__ import annotations

from dataclasses import dataclass

from inferd.errors import InferdError, RateLimited
from inferd.names import model_name, model_version
from inferd.security.apis import Api
from inferd.security.audit import AuditLog
from inferd.security.auth import Authenticator
from inferd.security.keys import Principal
from inferd.security.ratelimit import Limiter, Limits, make_limits
from inferd.security.tokens import TokenAccount, TokenBudgets


@dataclass(frozen=True, slots=True)
class Access:
    """What a request asks for, as a front-end classified it."""

    api: Api | None  # None: an unknown route; only authentication applies, then the route answers 404
    model: str | None = None
    version: str | None = None


class Gate:
    def __init__(
        self,
        authenticator: Authenticator | None,
        limiter: Limiter | None,
        default_limits: Limits,
        audit: AuditLog | None,
        tokens_per_minute: int | None = None,
    ) -> None:
        self.authenticator = authenticator
        self.limiter = limiter
        self.audit = audit
        self._default_limits = default_limits
        # Refusals by reason (unauthenticated, permission_denied, rate, quota, tokens, limiter_unavailable).
        self.refusals: dict[str, int] = {}
        # Token quotas of generative routes; tokens are counted per key whenever keys are configured.
        self.tokens: TokenBudgets | None = None
        if tokens_per_minute is not None or authenticator is not None:
            self.tokens = TokenBudgets()
        self._tokens_per_minute = tokens_per_minute

    def _count(self, reason: str) -> None:
        self.refusals[reason] = self.refusals.get(reason, 0) + 1

    async def admit(self, credential: str | None, access: Access, client: str) -> Principal | None:
        """The caller's principal (None without keys); raises Unauthenticated, InvalidName (a model
        name or version that is not one: checked after the key, before its scope and any rate-limit
        bucket), PermissionDenied, RateLimited, or Unavailable (a fail-closed limiter whose Redis is down)."""
        principal = None
        api = access.api
        try:  # counted for /metrics; free when nothing is raised
            if self.authenticator is not None:
                principal = self.authenticator.check(credential, api, access.model)
            if access.model is not None:
                model_name(access.model)
            model_version(access.version)
        except InferdError as exc:
            self._count(exc.kind.value)
            raise
        if self.limiter is not None and api is Api.INFERENCE and access.model is not None:
            limits = self._limits(principal)
            if limits.active:
                caller = principal.id if principal is not None else client
                try:
                    denial = await self.limiter.acquire(caller, access.model, limits)
                except InferdError:  # a fail-closed limiter without its Redis
                    self._count("limiter_unavailable")
                    raise
                if denial is not None:
                    self._count(denial.reason)
                    what = "daily query quota" if denial.reason == "quota" else "rate limit"
                    raise RateLimited(
                        f"{what} exceeded for model '{access.model}'; retry after {denial.retry_after_s} s",
                        denial.retry_after_s,
                        principal.id if principal is not None else None,
                    )
        return principal

    def _limits(self, principal: Principal | None) -> Limits:
        default = self._default_limits
        if principal is None or (
            principal.rate is None and principal.burst is None and principal.daily_quota is None
        ):
            return default
        rate: float | None
        if principal.rate is not None:  # its own rate: its own burst, or one derived from that rate
            rate, burst = principal.rate, principal.burst
        else:
            rate, burst = default.rate, principal.burst or default.burst
        quota = principal.daily_quota if principal.daily_quota is not None else default.daily_quota
        return make_limits(rate, burst, quota)

    def token_account(
        self, principal: Principal | None, client: str, protocol: str, call: str
    ) -> TokenAccount | None:
        """The account generative routes charge for an admitted request (None: tokens not counted)."""
        if self.tokens is None:
            return None
        limit = self._tokens_per_minute
        if principal is not None and principal.tokens_per_minute is not None:
            limit = principal.tokens_per_minute
        key_id = principal.id if principal is not None else None
        record = None
        if self.audit is not None:
            audit = self.audit

            def record(model: str, version: str, tokens: int, outcome: str) -> None:
                access = Access(Api.INFERENCE, model, version)
                audit.record(protocol, key_id, client, access, call, outcome, tokens)

        return TokenAccount(
            self.tokens, key_id or client, key_id, limit, lambda: self._count("tokens"), record
        )

    def record(
        self,
        protocol: str,
        key_id: str | None,
        client: str,
        access: Access,
        call: str,
        status: int | str,
    ) -> None:
        if self.audit is not None:
            self.audit.record(protocol, key_id, client, access, call, status)

    async def close(self) -> None:
        if self.limiter is not None:
            await self.limiter.close()
        if self.audit is not None:
            await self.audit.close()


def refused_key_id(exc: BaseException) -> str | None:
    """The key id a refusal (403, 429) names, for the audit log."""
    return getattr(exc, "key_id", None)
