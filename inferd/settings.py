"""Server settings: one model, filled from INFERD_* environment variables and the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_MIB = 1024 * 1024

# Scheduling defaults, also used where no Settings exist (a ModelRepository built in a test).
# Requests allowed to wait per model version: 503 beyond it rather than an ever longer queue.
DEFAULT_MAX_QUEUE_SIZE = 1024
# A batch still running after this long fails (504) and its instance gets a new thread.
DEFAULT_EXECUTION_TIMEOUT_S = 60.0
DEFAULT_DRAIN_TIMEOUT_S = 30.0


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
    # grpc.aio servers sharing the port, each accepting calls on its own, so that under load several
    # calls reach the event loop per turn and batch (inferd/grpc/server.py).
    accept_loops: int = Field(default=8, ge=1, le=64)


class ConnectionSettings(BaseModel):
    """What a client may hold before it has sent a request (docs/hardening.md#connection-limits)."""

    # Request line + header block of a REST request, counted as the bytes arrive; beyond: 431, close.
    max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * _MIB)
    # Header fields in one REST request; beyond: 431, close.
    max_headers: int = Field(default=100, ge=1)
    # Seconds to send a whole REST header block, from the connection's start or the previous
    # response; also gRPC's handshake timeout. Then the connection is closed.
    header_timeout_s: float = Field(default=10.0, gt=0)
    # Open connections per listener (REST, gRPC, metrics); more are closed at once. Lowered at start
    # to fit the open-file limit.
    max_connections: int = Field(default=10_000, ge=1)


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
    # A model version still loading or warming up after this many seconds fails (its model's lock is
    # released; a late-finishing load is discarded).
    load_timeout_s: float = Field(default=120.0, gt=0)


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
    # Token quota of generative routes: prompt + generated tokens per caller per minute (all models).
    tokens_per_minute: int | None = Field(default=None, ge=1, le=10**12)
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


class MetricsSettings(BaseModel):
    """Prometheus metrics, cost and the status page (docs/metrics.md)."""

    # Serve /metrics (and the status page) on the REST port.
    enabled: bool = True
    # Also serve /metrics alone on this port (0 picks a free one); None: only on the REST port.
    port: int | None = Field(default=None, ge=0, le=65535)
    dashboard: bool = True
    # Dollars per hour of this machine; busy (compute) time is priced at it.
    price_per_hour: float | None = Field(default=None, ge=0)
    # Or name the instance type and give a table of prices (instance type -> dollars per hour).
    instance_type: str | None = None
    prices: dict[str, float] = Field(default_factory=dict)
    # How often measured energy (RAPL, NVML) is charged to the models busy in the interval.
    energy_interval_s: float = Field(default=1.0, gt=0)

    @model_validator(mode="after")
    def _instance_type_is_priced(self) -> MetricsSettings:
        if self.instance_type is not None and self.instance_type not in self.prices:
            known = ", ".join(sorted(self.prices)) or "none"
            raise ValueError(f"no price for instance type '{self.instance_type}' (priced: {known})")
        return self

    @property
    def effective_price_per_hour(self) -> float | None:
        if self.price_per_hour is not None:
            return self.price_per_hour
        return self.prices[self.instance_type] if self.instance_type is not None else None


class LogSettings(BaseModel):
    # json: one JSON object per line; text: the classic human-readable line.
    format: Literal["json", "text"] = "json"
    # One line per inference request (model, version, status, latency). Off by default: it costs
    # several microseconds per request.
    access_log: bool = False


class DriftSettings(BaseModel):
    """Input drift against a model's reference profile (drift_profile.json, `inferd profile`)."""

    enabled: bool = True
    # Sample one request in this many; the request path only counts.
    sample_every: int = Field(default=4, ge=1)
    # Rows kept per model in the sliding window the scores are computed on.
    window_rows: int = Field(default=2000, ge=10)
    # Seconds between score updates (done in a background task).
    interval_s: float = Field(default=5.0, gt=0)
    psi_threshold: float = Field(default=0.2, gt=0)
    ks_threshold: float = Field(default=0.2, gt=0, le=1)
    # Scores are withheld until the window holds at least this many rows.
    min_rows: int = Field(default=100, ge=1)


class TracingSettings(BaseModel):
    """OpenTelemetry spans per request (the ``tracing`` extra); the exporter is configured by the
    standard OTEL_* variables (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, ...)."""

    enabled: bool = False


class CacheSettings(BaseModel):
    """The response cache that models with ``response_cache: true`` use (docs/hardening.md)."""

    # "memory" (in-process LRU), "off", or a redis:// (rediss://, unix://) URL shared by replicas.
    backend: str = "memory"
    # Byte budget of the in-process LRU: keys, values and per-entry overhead.
    memory_bytes: int = Field(default=256 * _MIB, ge=0)
    # How long Redis keeps an entry.
    ttl_s: float = Field(default=3600.0, gt=0)
    key_prefix: str = "inferd:"
    # With API keys, an entry is a hit only for the key that stored it; True shares entries across
    # keys (a hit is faster, so a co-tenant could learn that someone sent an input: docs/security.md).
    share_across_keys: bool = False

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


class SchedulingSettings(BaseModel):
    # Default for models whose config.yaml sets no inline_execution_max_us: a lone request on an idle
    # model measured to run within this many microseconds runs on the event-loop thread; 0: never;
    # "auto": a bound derived from the measured thread hop (inferd/scheduler/lone.py).
    inline_execution_max_us: Annotated[int, Field(ge=0, le=10_000)] | Literal["auto"] = "auto"
    # Default for models whose config.yaml sets no max_queue_size: requests allowed to wait per model
    # version, more get 503 at once; 0: unbounded (what a model's own `max_queue_size: 0` means too).
    max_queue_size: int = Field(default=DEFAULT_MAX_QUEUE_SIZE, ge=0)
    # Default for models whose config.yaml sets no execution_timeout_s: a batch running longer fails
    # with 504 and its instance gets a new thread (docs/hardening.md); 0: no limit.
    execution_timeout_s: float = Field(default=DEFAULT_EXECUTION_TIMEOUT_S, ge=0, le=86_400)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERD_", env_nested_delimiter="__", extra="forbid")

    model_repository: Path = Path("models")
    # Single-model mode (KServe): model_repository is this one model's directory (repository/single.py).
    model_name: str | None = None
    http: HttpSettings = HttpSettings()
    grpc: GrpcSettings = GrpcSettings()
    connections: ConnectionSettings = ConnectionSettings()
    lifecycle: LifecycleSettings = LifecycleSettings()
    security: SecuritySettings = SecuritySettings()
    cache: CacheSettings = CacheSettings()
    admission: AdmissionSettings = AdmissionSettings()
    scheduling: SchedulingSettings = SchedulingSettings()
    limits: LimitsSettings = LimitsSettings()
    # False: a model that fails to load is kept, marked not ready, and the server starts anyway.
    exit_on_error: bool = True
    # Once serving, write {"http": port, "grpc": port} here (useful with port 0).
    port_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Seconds to finish accepted requests after SIGTERM/SIGINT before exiting; also how long a model
    # version being unloaded or shut down waits for its queued and running work before failing it.
    drain_timeout_s: float = Field(default=DEFAULT_DRAIN_TIMEOUT_S, ge=0)
    metrics: MetricsSettings = MetricsSettings()
    logs: LogSettings = LogSettings()
    drift: DriftSettings = DriftSettings()
    tracing: TracingSettings = TracingSettings()
