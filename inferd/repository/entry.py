"""Per-model lifecycle state: the served versions, the default pointer, and what happened to each version."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from inferd.model_config import ModelConfig, RolloutConfig
from inferd.repository.loader import Fingerprint, LoadedModel
from inferd.repository.provenance import index_note
from inferd.repository.rollout import Rollout
from inferd.runtimes.processes import runtime_healthy

log = logging.getLogger(__name__)


class VersionState(enum.Enum):
    """loading → warming → ready → draining → unloaded; a load or a canary can end in failed."""

    LOADING = "loading"
    WARMING = "warming"
    READY = "ready"
    DRAINING = "draining"
    UNLOADED = "unloaded"
    FAILED = "failed"


# The model repository extension's state names (Triton's), for the index.
TRITON_STATE = {
    VersionState.LOADING: "LOADING",
    VersionState.WARMING: "LOADING",
    VersionState.READY: "READY",
    VersionState.DRAINING: "UNLOADING",
    VersionState.UNLOADED: "UNAVAILABLE",
    VersionState.FAILED: "UNAVAILABLE",
}


@dataclass(slots=True)
class VersionStatus:
    """A version that is not (or not only) serving: being loaded, drained, unloaded or failed."""

    state: VersionState
    reason: str = ""
    # The files it was loaded from (or failed on): a failed load is retried only when they change.
    fingerprint: Fingerprint | None = None


@dataclass(slots=True, eq=False)
class ModelEntry:
    name: str
    # Versions reachable by number, each READY. Replaced as a whole, never mutated in place.
    served: dict[str, LoadedModel] = field(default_factory=dict)
    # The handle requests without a version go to: the one pointer a hot swap changes.
    default: LoadedModel | None = None
    # Why the model is not (fully) serving; empty when every wanted version serves.
    reason: str = ""
    # Whether the model should be loaded (explicit mode: a load was asked for and no unload since).
    wanted: bool = True
    # --lazy: not loaded yet, loads on its first request.
    lazy: bool = False
    status: dict[str, VersionStatus] = field(default_factory=dict)
    config: ModelConfig | None = None
    config_override: str | None = None
    # Set by a manual rollback: the default stays here until the next explicit load.
    pinned: str | None = None
    # Candidates that must not become the default by being the highest version.
    held_back: set[str] = field(default_factory=set)
    rollout: Rollout | None = None
    # The config rollout already started (with the candidate's files), so a poll does not restart it.
    applied_rollout: tuple[RolloutConfig, Fingerprint] | None = None
    # Earlier default versions, oldest first: where a manual rollback goes.
    history: list[str] = field(default_factory=list)
    events: deque[str] = field(default_factory=lambda: deque(maxlen=50))
    # How often each kind of decision happened (loads, load_failures, default_changes, rollbacks, …).
    counters: Counter[str] = field(default_factory=Counter)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def ready(self) -> bool:
        # A version whose worker process could not be restarted is not ready until it is.
        return self.default is not None and runtime_healthy(self.default.runtime)

    @property
    def versions(self) -> dict[str, LoadedModel]:
        """The served versions (read-only view for metrics and pages)."""
        return self.served

    def note(self, event: str, counter: str | None = None) -> None:
        self.events.append(f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {event}")
        if counter is not None:
            self.counters[counter] += 1

    def choose_default(self, served: dict[str, LoadedModel]) -> LoadedModel | None:
        """The rollout's stable version, else the pinned one, else the highest not held back."""
        if self.rollout is not None and self.rollout.stable_version in served:
            return served[self.rollout.stable_version]
        if self.pinned is not None and self.pinned in served:
            return served[self.pinned]
        eligible = [key for key in served if key not in self.held_back] or list(served)
        return served[max(eligible, key=int)] if eligible else None

    def serving_note(self, key: str) -> str:
        """The index's reason for a READY version."""
        rollout = self.rollout
        notes = []
        if self.default is not None and self.default.version == key:
            notes.append("default version")
        if rollout is not None and key == rollout.candidate_version:
            mode = "shadow" if rollout.shadow else "canary"
            notes.append(f"{mode} candidate at {rollout.config.canary_percent:g}%")
        if self.pinned == key:
            notes.append("pinned by rollback")
        served = self.served.get(key)
        if served is not None and served.provenance:
            notes.append(index_note(served.provenance))
        status = self.status.get(key)
        if status is not None:
            notes.append(f"{status.state.value}: {status.reason}" if status.reason else status.state.value)
        return "; ".join(notes)

    def wanted_versions(self, config: ModelConfig, available: list[int]) -> list[int]:
        """The policy's versions, plus a config rollout's candidate, a pin and a running rollout's pair."""
        rollout = config.rollout
        candidate = rollout.candidate if rollout is not None and rollout.candidate in available else None
        wanted = set(config.version_policy.select([v for v in available if v != candidate]))
        extra = [self.pinned]
        if candidate is not None:
            extra.append(str(candidate))
        if self.rollout is not None:
            extra += [self.rollout.stable_version, self.rollout.candidate_version]
        wanted.update(int(key) for key in extra if key is not None and int(key) in available)
        return sorted(wanted)

    def pending_config_rollout(
        self, config: ModelConfig, served: dict[str, LoadedModel]
    ) -> LoadedModel | None:
        """A config rollout not started yet for these candidate files; its candidate is held back."""
        rollout = config.rollout
        if rollout is None or self.rollout is not None:
            return None
        candidate = served.get(str(rollout.candidate))
        if candidate is None or self.applied_rollout == (rollout, candidate.fingerprint):
            return None
        self.held_back.add(candidate.version)
        return candidate

    def begin_rollout(self, key: str, config: RolloutConfig, origin: str) -> None:
        """The current default becomes the stable side; ``key`` gets its share of the traffic."""
        assert self.default is not None
        rollout = Rollout(self.default.version, key, config, origin)
        self.rollout = rollout
        self.default.rollout = rollout
        mode = "shadows" if config.shadow else "gets"
        message = (
            f"rollout started ({origin}): version {key} {mode} {config.canary_percent:g}% of "
            f"version {rollout.stable_version}'s traffic"
        )
        self.note(message, "rollouts_started")
        log.info("model %s: %s", self.name, message)

    def last_used(self) -> float:
        """Wall-clock ms of the model's latest inference, else when it was loaded."""
        return max(
            (max(model.stats.last_inference_ms, model.loaded_at_ms) for model in self.served.values()),
            default=0,
        )
