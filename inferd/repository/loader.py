"""Building one servable version: read its files, load the runtime, warm it up (blocking steps)."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from inferd.errors import InvalidRequest, ModelLoadError
from inferd.model_config import CONFIG_FILE, ModelConfig, load_model_config
from inferd.repository.paths import relative_to_repository
from inferd.repository.warmup import ColdStart, warm_up
from inferd.runtimes.base import Runtime, Signature
from inferd.runtimes.registry import MODEL_FILES, model_file
from inferd.runtimes.response_parameters import parameters_of
from inferd.scheduler.batcher import Batcher
from inferd.scheduler.lone import INLINE_AUTO
from inferd.scheduler.policy import BatchPolicy
from inferd.scheduler.sequence_batcher import SequenceBatcher
from inferd.scheduler.sequence_plan import sequence_plan
from inferd.scheduler.stats import ModelStats
from inferd.settings import DEFAULT_DRAIN_TIMEOUT_S, DEFAULT_EXECUTION_TIMEOUT_S, DEFAULT_MAX_QUEUE_SIZE
from inferd.types import InferResponse, Tensor

if TYPE_CHECKING:
    from inferd.repository.rollout import Rollout

RuntimeFactory = Callable[[Path, ModelConfig], Runtime]


@dataclass(frozen=True, slots=True)
class SchedulerDefaults:
    """Server-wide values (Settings) for what a model's config.yaml leaves unset."""

    max_queue_size: int = DEFAULT_MAX_QUEUE_SIZE
    execution_timeout_s: float = DEFAULT_EXECUTION_TIMEOUT_S
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S


SERVER_DEFAULTS = SchedulerDefaults()
# Platforms whose executions are bounded computations: inline_execution_max_us "auto" applies to them.
_BOUNDED_PLATFORMS = frozenset({"onnxruntime", "pytorch", "sklearn", "xgboost", "lightgbm"})


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What a version was loaded from: a change to any part means the version must be reloaded."""

    config_digest: str
    model_mtime_ns: int
    model_size: int


@dataclass(frozen=True, slots=True)
class ModelFiles:
    config: ModelConfig
    config_digest: str


@dataclass(slots=True, eq=False)
class LoadedModel:
    """One servable model version: its runtime, its queue and its statistics."""

    name: str
    version: str
    config: ModelConfig
    runtime: Runtime
    policy: BatchPolicy
    batcher: Batcher | SequenceBatcher
    stats: ModelStats
    fingerprint: Fingerprint
    cold_start: ColdStart
    # A sequence model's signature without its control and state tensors; None: the runtime's.
    served_signature: Signature | None = None
    output_datatypes: dict[str, str] = field(init=False)
    # Set on the default version while a canary rollout runs; None on the plain hot path.
    rollout: Rollout | None = None
    loaded_at_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    # The version's provenance.json in brief (inferd optimize); empty for a version without one.
    provenance: dict[str, str] = field(default_factory=dict)
    # The version as response-cache keys name it: the number plus a digest of the model file, so a file
    # replaced under the same number never answers from the old file's cache entries (and replicas
    # serving the same file share entries).
    cache_version: str = ""
    # Requests that resolved this version and are not done with it (``hold``/``release``): a
    # replaced version's batcher is closed only once none is left, so a request that awaited
    # something (a cache lookup) after resolving it is still queued on it (docs/architecture.md).
    holds: int = 0
    # labels.txt beside the model, for the classification extension (empty: none).
    labels: tuple[str, ...] = ()
    _released: asyncio.Event | None = None

    def __post_init__(self) -> None:
        self.output_datatypes = {spec.name: spec.datatype for spec in self.runtime.signature.outputs}

    @property
    def signature(self) -> Signature:
        return self.served_signature or self.runtime.signature

    def response(
        self, request_id: str | None, outputs: dict[str, np.ndarray], names: Sequence[str]
    ) -> InferResponse:
        """The answer of this version: the ``names`` outputs, in that order, and the response
        parameters a Python model set for them (inferd/runtimes/response_parameters.py)."""
        datatypes = self.output_datatypes
        parameters = parameters_of(outputs)
        return InferResponse(
            model=self.name,
            version=self.version,
            outputs=[Tensor(name, datatypes[name], outputs[name]) for name in names],
            id=request_id,
            parameters=dict(parameters) if parameters else {},
        )

    def hold(self) -> None:
        self.holds += 1

    def release(self) -> None:
        self.holds -= 1
        if not self.holds and self._released is not None:
            self._released.set()

    async def released(self) -> None:
        """Return once no request holds this version. Called after it left the served map (or, at
        shutdown, after the front-ends stopped), when no new request can resolve it."""
        while self.holds:
            self._released = asyncio.Event()
            await self._released.wait()

    def close(self) -> None:
        self.runtime.close()


# Keys that decide which versions serve and how traffic is split, not how a version runs: changing
# them must not reload the versions.
_ROUTING_KEYS = {"version_policy", "rollout"}


def read_config(model_dir: Path, override: str | None) -> ModelFiles:
    """The model's configuration (the override replaces config.yaml) and a digest of what a loaded
    version depends on."""
    try:
        config = load_model_config(model_dir, override)
    except OSError as exc:
        raise ModelLoadError(f"{model_dir / CONFIG_FILE}: cannot read: {exc}") from None
    runtime_part = f"{config.inferred}:{config.model_dump_json(exclude=_ROUTING_KEYS)}"
    return ModelFiles(config, hashlib.sha256(runtime_part.encode()).hexdigest()[:16])


def check_config(root: Path, name: str, override: str | None) -> ModelFiles:
    """``read_config`` for a request (load API, rollout): its errors name paths relative to the
    repository, and a client's override that does not validate is the client's error (400)."""
    try:
        return read_config(root / name, override)
    except ModelLoadError as exc:
        message = relative_to_repository(exc.message, root)
        raise (ModelLoadError(message) if override is None else InvalidRequest(message)) from None


def fingerprint(files: ModelFiles, model_path: Path) -> Fingerprint | None:
    """None when the model file is missing. ``model_path`` is any file of the version directory; the
    file that counts is the one its platform loads."""
    model_path = model_file(model_path.parent, files.config) or model_path
    try:
        stat = model_path.stat()
    except OSError:
        return None
    return Fingerprint(files.config_digest, stat.st_mtime_ns, stat.st_size)


def load_runtime(factory: RuntimeFactory, model_path: Path, config: ModelConfig) -> tuple[Runtime, float]:
    """Blocking: create the runtime; returns it and the load time in milliseconds."""
    # The platform's file (an ensemble's is its version directory).
    if not (model_file(model_path.parent, config) or model_path).exists():
        raise ModelLoadError(f"{model_path}: file not found")
    start = time.perf_counter()
    runtime = factory(model_path, config)
    return runtime, (time.perf_counter() - start) * 1e3


def close_loaded(loaded: tuple[Runtime, float]) -> None:
    """Close what ``load_runtime`` returned (a load abandoned at its deadline)."""
    loaded[0].close()


def file_digest(model_path: Path) -> str:
    """Blocking: a short SHA-256 of the version's model files (every platform's file that is there)."""
    paths = [p for p in (model_path.parent / name for name in MODEL_FILES) if p.is_file()]
    if not paths and model_path.is_file():
        paths = [model_path]  # an ensemble's version directory holds none: the digest of nothing
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as file:
            digest.update(path.name.encode() + b"\0" + hashlib.file_digest(file, "sha256").digest())
    return digest.hexdigest()[:16]


def batch_policy(
    config: ModelConfig,
    signature: Signature,
    model_dir: Path,
    inline_default_us: int | Literal["auto"] = 0,
    defaults: SchedulerDefaults = SERVER_DEFAULTS,
    platform: str = "onnxruntime",
) -> BatchPolicy:
    batching = config.dynamic_batching
    inline = config.inline_execution_max_us
    if inline is None:
        inline = inline_default_us
    inline_ns = inline * 1000 if inline != "auto" else _auto_inline(platform)
    if config.instance_kind == "process":
        inline_ns = 0  # the loop thread never waits on a worker process that may hang or die
    dynamic = batching is not None or (config.inferred and signature.max_batch_size > 0)
    execution_timeout_s = config.execution_timeout_s
    if execution_timeout_s is None:
        execution_timeout_s = defaults.execution_timeout_s
    sequences = config.sequence_batching
    policy = BatchPolicy(
        max_batch_size=signature.max_batch_size,
        dynamic=dynamic,
        max_queue_delay_ns=int((batching.max_queue_delay_ms if batching else 0) * 1e6),
        preferred_batch_sizes=batching.preferred_batch_sizes if batching else (),
        max_queue_size=defaults.max_queue_size if config.max_queue_size is None else config.max_queue_size,
        inline_max_ns=inline_ns,
        execution_timeout_ns=int(execution_timeout_s * 1e9),
        drain_timeout_ns=int(defaults.drain_timeout_s * 1e9),
        target_p99_ns=int((batching.target_p99_ms or 0) * 1e6) if batching else 0,
        sequence=None
        if sequences is None
        else sequence_plan(sequences, signature, config.instances, model_dir),
    )
    if policy.preferred_batch_sizes and max(policy.preferred_batch_sizes) > signature.max_batch_size:
        raise ModelLoadError(
            f"{model_dir}: preferred_batch_sizes exceed the max_batch_size {signature.max_batch_size}"
        )
    return policy


def _auto_inline(platform: str) -> int:
    """Measured inline execution only where a run is a bounded computation: a Python model's code may
    block (I/O, locks), and an inline run escapes the execution timeout."""
    return INLINE_AUTO if platform in _BOUNDED_PLATFORMS else 0


def warm(
    runtime: Runtime,
    config: ModelConfig,
    model_dir: Path,
    load_ms: float,
    stop: Callable[[], bool] = lambda: False,
) -> ColdStart:
    """Blocking: run the configured warm-up (until ``stop()``); closes the runtime when it fails."""
    try:
        return warm_up(runtime, config.warmup, model_dir, load_ms, stop)
    except BaseException:
        runtime.close()
        raise


def assemble(
    name: str,
    version: str,
    config: ModelConfig,
    runtime: Runtime,
    policy: BatchPolicy,
    print_: Fingerprint,
    cold_start: ColdStart,
) -> LoadedModel:
    stats = ModelStats()
    if policy.sequence is not None:
        sequences = SequenceBatcher(runtime, policy.sequence, policy, stats, name)
        return LoadedModel(
            name,
            version,
            config,
            runtime,
            policy,
            sequences,
            stats,
            print_,
            cold_start,
            policy.sequence.served,
        )
    batcher = Batcher(runtime, policy, stats, name)
    return LoadedModel(name, version, config, runtime, policy, batcher, stats, print_, cold_start)
