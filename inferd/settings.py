"""Server settings: one model, filled from INFERD_* environment variables and the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

_MIB = 1024 * 1024


class HttpSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # Largest request body accepted; larger ones get 413 before they are read.
    max_body_bytes: int = Field(default=64 * _MIB, ge=1024)


class GrpcSettings(BaseModel):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=0, le=65535)
    # gRPC's own default (4 MiB) is too small for image batches.
    max_message_bytes: int = Field(default=64 * _MIB, ge=1024)


class SecuritySettings(BaseModel):
    """Authentication, rate limits, TLS and audit (docs/security.md). Everything is off by default."""

    # Key file (YAML/JSON, hashed keys; `inferd keys add`), reloaded on SIGHUP and when it changes.
    api_keys_file: Path | None = None
    # The same document inline, e.g. INFERD_SECURITY__API_KEYS='{"keys": [...]}' (not reloaded).
    api_keys: str | None = None
    keys_reload_interval_s: float = Field(default=2.0, gt=0)
    # Leave health endpoints (live, ready, model ready) open to callers without a key.
    open_health: bool = False
    # Requests/s per caller (key, or client address without keys) per model; burst defaults to 1 s.
    rate_limit: float | None = Field(default=None, gt=0)
    rate_burst: int | None = Field(default=None, ge=1)
    daily_quota: int | None = Field(default=None, ge=1)
    # Share buckets and quotas between replicas; without it they are kept in this process.
    rate_limit_redis: str | None = None
    # Redis unreachable: "open" lets requests through, "closed" answers 503.
    rate_limit_redis_failure: Literal["open", "closed"] = "open"
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Require client certificates signed by this CA (mutual TLS).
    tls_client_ca_file: Path | None = None
    # Append-only JSON-lines audit log of every request: who, what, when, outcome.
    audit_log: Path | None = None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERD_", env_nested_delimiter="__", extra="forbid")

    model_repository: Path = Path("models")
    http: HttpSettings = HttpSettings()
    grpc: GrpcSettings = GrpcSettings()
    security: SecuritySettings = SecuritySettings()
    # False: a model that fails to load is kept, marked not ready, and the server starts anyway.
    exit_on_error: bool = True
    # Once serving, write {"http": port, "grpc": port} here (useful with port 0).
    port_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Seconds to finish accepted requests after SIGTERM/SIGINT before exiting.
    drain_timeout_s: float = Field(default=30.0, ge=0)
