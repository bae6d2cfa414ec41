"""Server settings: one model, filled from INFERD_* environment variables and the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
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


class CacheSettings(BaseModel):
    """The response cache that models with ``response_cache: true`` use (docs/hardening.md)."""

    # "memory" (in-process LRU), "off", or a redis:// (rediss://, unix://) URL shared by replicas.
    backend: str = "memory"
    # Byte budget of the in-process LRU: keys, values and per-entry overhead.
    memory_bytes: int = Field(default=256 * _MIB, ge=0)
    # How long Redis keeps an entry.
    ttl_s: float = Field(default=3600.0, gt=0)
    key_prefix: str = "inferd:"

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, backend: str) -> str:
        if backend in ("memory", "off") or backend.startswith(("redis://", "rediss://", "unix://")):
            return backend
        raise ValueError(f"cache backend must be 'memory', 'off' or a redis:// URL, got {backend!r}")


class LimitsSettings(BaseModel):
    """Server-wide bounds on request tensors; a model's config.yaml `limits:` may override them."""

    # Elements in one tensor, batch included (a decoded 2**26-element FP32 tensor is 256 MiB).
    max_tensor_elements: int = Field(default=2**26, ge=1)
    # Bytes in one BYTES element.
    max_bytes_length: int = Field(default=16 * _MIB, ge=0)


class AdmissionSettings(BaseModel):
    # Queue deadline for requests without a `timeout` parameter on models without default_timeout_us.
    default_timeout_us: int = Field(default=0, ge=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERD_", env_nested_delimiter="__", extra="forbid")

    model_repository: Path = Path("models")
    http: HttpSettings = HttpSettings()
    grpc: GrpcSettings = GrpcSettings()
    cache: CacheSettings = CacheSettings()
    admission: AdmissionSettings = AdmissionSettings()
    limits: LimitsSettings = LimitsSettings()
    # False: a model that fails to load is kept, marked not ready, and the server starts anyway.
    exit_on_error: bool = True
    # Once serving, write {"http": port, "grpc": port} here (useful with port 0).
    port_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Seconds to finish accepted requests after SIGTERM/SIGINT before exiting.
    drain_timeout_s: float = Field(default=30.0, ge=0)
