"""Canary rollouts and rollbacks: the decisions that move default traffic between loaded versions.

It works on the registry's per-model entries, under the same per-model locks as the reconciler, and
ends every change in ``ModelRegistry.switch``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from pydantic import ValidationError

from inferd.errors import InvalidRequest, Unavailable
from inferd.model_config import ModelConfig, RolloutConfig
from inferd.repository.entry import ModelEntry, VersionState, VersionStatus
from inferd.repository.loader import LoadedModel
from inferd.repository.registry import ModelRegistry
from inferd.repository.rollout import Decision
from inferd.repository.versions import VersionLoader

log = logging.getLogger(__name__)


class RolloutController:
    def __init__(self, registry: ModelRegistry, versions: VersionLoader) -> None:
        self._registry = registry
        self._versions = versions

    async def start_rollout(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        try:
            config = RolloutConfig.model_validate(document)
        except ValidationError as exc:
            problems = "; ".join(f"'{'.'.join(map(str, e['loc']))}': {e['msg']}" for e in exc.errors())
            raise InvalidRequest(f"invalid rollout: {problems}") from None
        entry = self._registry.entry(name)
        async with entry.lock:
            stable = entry.default
            if stable is None:
                raise Unavailable(f"model '{name}' is not ready: {entry.reason or 'not loaded'}")
            if stable.config.sequence_batching is not None:
                # Steps of one sequence split between versions would each see half its state.
                raise InvalidRequest(
                    f"model '{name}' uses sequence_batching: it cannot have a canary rollout"
                )
            if entry.rollout is not None:
                raise InvalidRequest(
                    f"model '{name}' already has a rollout of version {entry.rollout.candidate_version}; "
                    "roll it back first"
                )
            key = str(config.candidate)
            if key == stable.version:
                raise InvalidRequest(f"version {key} of model '{name}' is already the default version")
            if key not in entry.served:
                candidate = await self._versions.load_from_disk(entry, key)
                entry.held_back.add(key)  # loaded beside: it must not become the default by policy
                self._registry.switch(entry, {**entry.served, key: candidate})
            entry.held_back.add(key)
            entry.begin_rollout(key, config, "api")
            assert entry.rollout is not None
            return entry.rollout.as_dict()

    async def rollback(self, name: str) -> str:
        """Stop a running rollout, or return to the previous default version; returns the version."""
        entry = self._registry.entry(name)
        async with entry.lock:
            if entry.rollout is not None:
                stable = entry.rollout.stable_version
                self._end_rollout(entry, Decision("rollback", "manual rollback"))
                return stable
            if not entry.history or entry.default is None:
                raise InvalidRequest(f"model '{name}' has no earlier version to roll back to")
            target = entry.history[-1]
            served = entry.served
            if target not in served:
                served = {**served, target: await self._versions.load_from_disk(entry, target)}
            current = entry.default.version
            entry.history.pop()
            entry.pinned = target
            entry.held_back.add(current)
            self._registry.switch(entry, served, record_history=False)
            entry.note(f"manual rollback: default version {current} -> {target}", "manual_rollbacks")
            log.warning("model %s: manual rollback from version %s to %s", name, current, target)
            return target

    async def promote(self, name: str) -> str:
        """End a running rollout by making its candidate the default now; returns the version."""
        entry = self._registry.entry(name)
        async with entry.lock:
            rollout = entry.rollout
            if rollout is None:
                raise InvalidRequest(f"model '{name}' has no rollout to promote")
            self._end_rollout(entry, Decision("promote", "promoted by request"))
            return rollout.candidate_version

    def rollout_status(self, name: str) -> dict[str, Any] | None:
        rollout = self._registry.entry(name).rollout
        return rollout.as_dict() if rollout else None

    async def check_rollouts(self) -> None:
        now = time.monotonic()
        for entry in self._registry.entries():
            rollout = entry.rollout
            if rollout is None:
                continue
            decision = rollout.evaluate(now)
            # No lock: ending a rollout is one synchronous step, and a load holding the lock re-reads
            # the served map after its awaits, so a rollback never waits for a slow load.
            if decision is not None and entry.rollout is rollout:
                self._end_rollout(entry, decision)

    def start_config_rollout(self, entry: ModelEntry, candidate: LoadedModel, config: ModelConfig) -> None:
        assert config.rollout is not None
        entry.applied_rollout = (config.rollout, candidate.fingerprint)
        if entry.default is None or entry.default is candidate:
            entry.held_back.discard(candidate.version)  # nothing to compare against: it simply serves
            self._registry.switch(entry, entry.served)
            return
        entry.begin_rollout(candidate.version, config.rollout, "config.yaml")

    def follow_config_rollout(self, entry: ModelEntry, config: ModelConfig) -> None:
        """A running rollout that config.yaml started follows edits of its ``rollout:`` section: new
        settings (a bigger canary_percent, other guard rails) apply at once; removing it rolls back."""
        rollout = entry.rollout
        if rollout is None or rollout.origin != "config.yaml":
            return
        wanted = config.rollout
        if wanted is None or str(wanted.candidate) != rollout.candidate_version:
            self._end_rollout(entry, Decision("rollback", "rollout removed from config.yaml"))
            return
        if wanted != rollout.config:
            rollout.reconfigure(wanted)
            entry.applied_rollout = (wanted, entry.served[rollout.candidate_version].fingerprint)
            entry.note(f"rollout of version {rollout.candidate_version} now at {wanted.canary_percent:g}%")

    def _end_rollout(self, entry: ModelEntry, decision: Decision) -> None:
        rollout = entry.rollout
        assert rollout is not None
        entry.rollout = None
        key = rollout.candidate_version
        candidate = entry.served.get(key)
        if decision.action == "rollback":
            reason = f"rolled back: {decision.reason}"
            print_ = candidate.fingerprint if candidate is not None else None
            entry.status[key] = VersionStatus(VersionState.FAILED, reason, print_)
            self._registry.switch(entry, {k: m for k, m in entry.served.items() if k != key})
            entry.note(f"version {key} {reason}", "rollbacks")
            log.warning("model %s: version %s %s", entry.name, key, reason)
            return
        entry.held_back.discard(key)
        higher = [k for k in entry.served if int(k) > int(key) and k not in entry.held_back]
        entry.pinned = key if higher else None
        self._registry.switch(entry, entry.served)
        entry.note(f"version {key} promoted: {decision.reason}", "promotions")
        log.info("model %s: version %s promoted: %s", entry.name, key, decision.reason)
