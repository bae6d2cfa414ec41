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


class LifecycleSettings(BaseModel):
    """Which models load when, and how often the repository and running rollouts are checked."""

    # none: load every model at start; poll: also pick up changes on disk; explicit: load API only.
    model_control: Literal["none", "poll", "explicit"] = "none"
    poll_interval_s: float = Field(default=5.0, gt=0)
    # Explicit mode: models loaded at start ("*" loads every model).
    load_models: tuple[str, ...] = ()
    # How often running rollouts' guard rails are evaluated.
    rollout_check_interval_s: float = Field(default=0.2, gt=0)
    # Load each model on its first request instead of at start.
    lazy: bool = False
    # Above this many loaded models, the least recently used idle ones are unloaded.
    max_loaded_models: int | None = Field(default=None, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERD_", env_nested_delimiter="__", extra="forbid")

    model_repository: Path = Path("models")
    http: HttpSettings = HttpSettings()
    grpc: GrpcSettings = GrpcSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    # False: a model that fails to load is kept, marked not ready, and the server starts anyway.
    exit_on_error: bool = True
    # Once serving, write {"http": port, "grpc": port} here (useful with port 0).
    port_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Seconds to finish accepted requests after SIGTERM/SIGINT before exiting.
    drain_timeout_s: float = Field(default=30.0, ge=0)
