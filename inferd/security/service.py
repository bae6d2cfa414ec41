"""Builds the security parts from SecuritySettings and runs their background jobs (key reload, audit)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from inferd.security.audit import AuditLog
from inferd.security.auth import Authenticator
from inferd.security.gate import Gate
from inferd.security.keys import KeyStore
from inferd.security.ratelimit import Limiter, LocalLimiter, make_limits
from inferd.security.tls import TlsFiles
from inferd.settings import SecuritySettings

log = logging.getLogger(__name__)


class Security:
    """``gate`` is None when auth, rate limits and audit are all off; ``tls`` None when TLS is off."""

    def __init__(self, settings: SecuritySettings) -> None:
        self._settings = settings
        self.tls = _tls_files(settings)
        self.keys: KeyStore | None = None
        if settings.api_keys_file is not None or settings.api_keys:
            self.keys = KeyStore(settings.api_keys_file, settings.api_keys)
        self.gate = self._build_gate()
        self._watch: asyncio.Task[None] | None = None

    def _build_gate(self) -> Gate | None:
        settings = self._settings
        authenticator = Authenticator(self.keys, settings.open_health) if self.keys is not None else None
        limiter: Limiter | None = None
        if settings.rate_limit is not None or settings.daily_quota is not None or self.keys is not None:
            # Keys may carry their own limits, so a limiter exists whenever keys do; it is only asked
            # about callers that have limits.
            if settings.rate_limit_redis:
                from inferd.security.redis_limiter import RedisLimiter  # imported only when used

                if not settings.rate_limit_redis.startswith(("redis://", "rediss://", "unix://")):
                    raise ValueError("--rate-limit-redis must be a redis://, rediss:// or unix:// URL")

                limiter = RedisLimiter(
                    settings.rate_limit_redis, fail_open=settings.rate_limit_redis_failure == "open"
                )
            else:
                limiter = LocalLimiter()
        audit = AuditLog(settings.audit_log) if settings.audit_log is not None else None
        tokens = settings.tokens_per_minute
        if authenticator is None and limiter is None and audit is None and tokens is None:
            return None
        limits = make_limits(settings.rate_limit, settings.rate_burst, settings.daily_quota)
        return Gate(authenticator, limiter, limits, audit, tokens)

    def start(self) -> None:
        """Start the background jobs; call from the running event loop."""
        if self.gate is not None and self.gate.audit is not None:
            self.gate.audit.start()
        if self.keys is not None and self._settings.api_keys_file is not None:
            self._watch = asyncio.get_running_loop().create_task(self._watch_key_file(self.keys))

    def reload_keys(self) -> None:
        """SIGHUP: read the key file again now."""
        if self.keys is not None:
            self.keys.reload()

    async def _watch_key_file(self, keys: KeyStore) -> None:
        while True:
            await asyncio.sleep(self._settings.keys_reload_interval_s)
            keys.reload_if_changed()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        if self.gate is not None:
            await self.gate.close()


def _tls_files(settings: SecuritySettings) -> TlsFiles | None:
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        if settings.tls_client_ca_file is not None:
            raise ValueError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if cert is None or key is None:
        raise ValueError("TLS needs both --tls-cert and --tls-key")
    files = TlsFiles(cert, key, settings.tls_client_ca_file)
    files.check()
    return files
