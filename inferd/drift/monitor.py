"""Live drift monitoring: sample requests cheaply, score them in the background, export and warn.

On the request path ``offer`` only counts and, one request in ``sample_every``, keeps a reference to
the already-decoded input arrays (a bounded list; nothing is copied). A background task moves the
samples into a fixed-size sliding window per input and recomputes PSI and KS per feature.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from inferd.drift.profile import PROFILE_FILE, ReferenceProfile, feature_matrix
from inferd.drift.scores import score_input
from inferd.periodic import Periodic

log = logging.getLogger(__name__)

# Samples waiting for the background task, per model; beyond this the request path drops them.
_MAX_PENDING = 256


class _Window:
    """The last ``size`` rows of one input, as a ring buffer."""

    def __init__(self, size: int, features: int) -> None:
        self.rows = np.zeros((size, features))
        self.filled = 0
        self._next = 0

    def add(self, matrix: np.ndarray) -> None:
        size = len(self.rows)
        matrix = matrix[-size:]
        end = self._next + len(matrix)
        if end <= size:
            self.rows[self._next : end] = matrix
        else:
            split = size - self._next
            self.rows[self._next :] = matrix[:split]
            self.rows[: end - size] = matrix[split:]
        self._next = end % size
        self.filled = min(size, self.filled + len(matrix))

    def values(self) -> np.ndarray:
        return self.rows[: self.filled]


@dataclass(slots=True, eq=False)
class _ModelDrift:
    name: str
    profile: ReferenceProfile
    windows: dict[str, _Window]
    seen: int = 0
    pending: list[dict[str, np.ndarray]] = field(default_factory=list)
    # (input, feature) -> (psi, ks)
    scores: dict[tuple[str, int], tuple[float, float]] = field(default_factory=dict)
    drifting: set[tuple[str, int]] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class DriftConfig:
    sample_every: int = 4
    window_rows: int = 2000
    interval_s: float = 5.0
    psi_threshold: float = 0.2
    ks_threshold: float = 0.2
    min_rows: int = 100


class DriftMonitor(Collector):
    def __init__(self, profiles: dict[str, ReferenceProfile], config: DriftConfig) -> None:
        self._config = config
        self._models = {
            name: _ModelDrift(
                name,
                profile,
                {i: _Window(config.window_rows, p.features) for i, p in profile.inputs.items()},
            )
            for name, profile in profiles.items()
        }
        self._scoring = Periodic(self.update, config.interval_s, "drift update")

    @classmethod
    def from_repository(cls, root: Path, config: DriftConfig) -> DriftMonitor | None:
        """A monitor for every model directory holding a drift_profile.json; None when there is none."""
        profiles = {}
        for path in sorted(root.glob(f"*/{PROFILE_FILE}")):
            try:
                profiles[path.parent.name] = ReferenceProfile.load(path)
            except (OSError, ValueError, KeyError) as exc:
                log.error("ignoring drift profile %s: %s", path, exc)
        if not profiles:
            return None
        log.info("drift monitoring: %s", ", ".join(profiles))
        return cls(profiles, config)

    # Request path ---------------------------------------------------------------------------------
    def offer(self, model: str, arrays: dict[str, np.ndarray]) -> None:
        state = self._models.get(model)
        if state is None:
            return
        state.seen += 1
        if state.seen % self._config.sample_every == 0 and len(state.pending) < _MAX_PENDING:
            state.pending.append(arrays)

    # Background -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._scoring.start()

    async def stop(self) -> None:
        await self._scoring.stop()

    def update(self) -> None:
        """Move pending samples into the windows and rescore (runs on the event loop thread)."""
        for state in self._models.values():
            pending, state.pending = state.pending, []
            for arrays in pending:
                for name, window in state.windows.items():
                    array = arrays.get(name)
                    if array is None or not array.size:
                        continue
                    matrix = feature_matrix(array, state.profile.batched)
                    # A dynamic dimension may give another feature count: such rows cannot be compared.
                    if matrix.shape[1] == window.rows.shape[1]:
                        window.add(matrix)
            self._rescore(state)

    def _rescore(self, state: _ModelDrift) -> None:
        config = self._config
        for name, window in state.windows.items():
            if window.filled < config.min_rows:
                continue
            for feature, (psi, ks) in enumerate(score_input(state.profile.inputs[name], window.values())):
                key = (name, feature)
                state.scores[key] = (psi, ks)
                over = psi > config.psi_threshold or ks > config.ks_threshold
                if over and key not in state.drifting:
                    state.drifting.add(key)
                    log.warning(
                        "input drift: model %s input %s feature %d psi=%.3f ks=%.3f",
                        state.name,
                        name,
                        feature,
                        psi,
                        ks,
                        extra={"fields": _fields(state.name, name, feature, psi, ks, window.filled)},
                    )
                elif not over and key in state.drifting:
                    state.drifting.discard(key)
                    log.info(
                        "input drift over: model %s input %s feature %d",
                        state.name,
                        name,
                        feature,
                        extra={"fields": _fields(state.name, name, feature, psi, ks, window.filled)},
                    )

    def sample(self, model: str) -> dict[str, list[list[float]]] | None:
        """The live rows kept of each input of ``model`` (inferd optimize --from-traffic), aligned
        across inputs (as many rows of each); None when the model is not monitored."""
        state = self._models.get(model)
        if state is None:
            return None
        rows = min((w.filled for w in state.windows.values()), default=0)
        return {name: w.values()[:rows].tolist() for name, w in state.windows.items()}

    # Export ---------------------------------------------------------------------------------------
    def collect(self) -> Iterable[Metric]:
        labels = ["model", "input", "feature"]
        psi = GaugeMetricFamily(
            "inferd_drift_psi", "Population stability index of live inputs vs the reference", labels=labels
        )
        ks = GaugeMetricFamily(
            "inferd_drift_ks", "Kolmogorov-Smirnov statistic of live inputs vs the reference", labels=labels
        )
        rows = GaugeMetricFamily(
            "inferd_drift_window_rows",
            "Rows in the live window drift is scored on",
            labels=["model", "input"],
        )
        drifting = GaugeMetricFamily(
            "inferd_drift_features_over_threshold",
            "Features whose PSI or KS is over its threshold",
            labels=["model"],
        )
        for state in self._models.values():
            for (name, feature), (p, k) in sorted(state.scores.items()):
                psi.add_metric([state.name, name, str(feature)], p)
                ks.add_metric([state.name, name, str(feature)], k)
            for name, window in state.windows.items():
                rows.add_metric([state.name, name], window.filled)
            drifting.add_metric([state.name], len(state.drifting))
        return [psi, ks, rows, drifting]


def _fields(model: str, name: str, feature: int, psi: float, ks: float, rows: int) -> dict[str, object]:
    return {
        "event": "drift",
        "model": model,
        "input": name,
        "feature": feature,
        "psi": round(psi, 4),
        "ks": round(ks, 4),
        "window_rows": rows,
    }
