"""Triton's trace extension over inferd's OpenTelemetry spans: which requests get a span.

Settings, server-wide and per model (a model's own values override the server's; clearing one
falls back): ``trace_level`` ``["TIMESTAMPS"]`` (spans) or ``["OFF"]``; ``trace_rate`` N traces one
request in every N; ``trace_count`` traces that many more requests then stops (-1: no limit).
``trace_mode`` is ``opentelemetry``; ``trace_file`` and ``log_frequency`` are reported, not
settable (spans go to the OTLP exporter, never to a file named by a request); ``TENSORS`` is refused
(inferd never records tensor data in spans).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from inferd.errors import InvalidRequest

SettingValue = str | list[str]
_LEVELS = ("OFF", "TIMESTAMPS")
_FIXED = {"trace_mode": "opentelemetry", "trace_file": "", "log_frequency": "0"}


@dataclass(frozen=True, slots=True)
class _Policy:
    level: str = "TIMESTAMPS"
    rate: int = 1
    count: int = -1


class TraceSettings:
    def __init__(self, available: bool) -> None:
        """``available``: whether the server has a span exporter (``--tracing``)."""
        self._available = available
        self._default = _Policy() if available else _Policy(level="OFF")
        self._server = self._default
        self._models: dict[str, dict[str, object]] = {}
        self._seen: dict[str | None, int] = {}
        self._left: dict[str | None, int] = {}

    def sample(self, model: str) -> bool:
        """Whether this request of ``model`` gets a span (called once per request, tracing on)."""
        scope: str | None = model if model in self._models else None
        policy = self._policy(model)
        if policy.level == "OFF":
            return False
        seen = self._seen.get(scope, 0) + 1
        self._seen[scope] = seen
        if policy.rate > 1 and seen % policy.rate:
            return False
        if policy.count >= 0:
            left = self._left.get(scope, policy.count)
            if left <= 0:
                return False
            self._left[scope] = left - 1
        return True

    def settings(self, model: str | None = None) -> dict[str, SettingValue]:
        policy = self._policy(model)
        return {
            "trace_level": [policy.level],
            "trace_rate": str(policy.rate),
            "trace_count": str(self._left.get(model if model in self._models else None, policy.count)),
            **_FIXED,
        }

    def update(self, changes: Mapping[str, object], model: str | None = None) -> dict[str, SettingValue]:
        """Apply ``changes`` (a None or empty value clears a setting); all are checked first."""
        parsed: dict[str, object | None] = {}
        for key, value in changes.items():
            parsed[key] = None if value in (None, [], "") else _parse(key, value, self._available)
        if model is None:
            fields = {
                _FIELD[k]: v if v is not None else getattr(self._default, _FIELD[k])
                for k, v in parsed.items()
                if k in _FIELD
            }
            self._server = replace(self._server, **fields)  # type: ignore[arg-type]
            self._reset(None)
        else:
            own = self._models.setdefault(model, {})
            for key, parsed_value in parsed.items():
                if key not in _FIELD:
                    continue
                if parsed_value is None:
                    own.pop(_FIELD[key], None)
                else:
                    own[_FIELD[key]] = parsed_value
            if not own:
                del self._models[model]
            self._reset(model)
        return self.settings(model)

    def _policy(self, model: str | None) -> _Policy:
        own = self._models.get(model) if model is not None else None
        return replace(self._server, **own) if own else self._server  # type: ignore[arg-type]

    def _reset(self, scope: str | None) -> None:
        self._seen.pop(scope, None)
        self._left.pop(scope, None)


_FIELD = {"trace_level": "level", "trace_rate": "rate", "trace_count": "count"}


def _parse(key: str, value: object, available: bool) -> object:
    if key == "trace_level":
        levels = value if isinstance(value, list) else [value]
        if len(levels) != 1 or levels[0] not in _LEVELS:
            raise InvalidRequest(f"trace_level must be one of {list(_LEVELS)} (inferd never traces tensors)")
        if levels[0] != "OFF" and not available:
            raise InvalidRequest("tracing is off in this server: start inferd with --tracing")
        return levels[0]
    if key in ("trace_rate", "trace_count"):
        text = value[0] if isinstance(value, list) and len(value) == 1 else value
        try:
            number = int(text) if isinstance(text, str) else None
        except ValueError:
            number = None
        low = 1 if key == "trace_rate" else -1
        if number is None or number < low:
            raise InvalidRequest(f"{key} must be an integer of at least {low}, as a string")
        return number
    if key in _FIXED:
        text = value[0] if isinstance(value, list) and len(value) == 1 else value
        if text != _FIXED[key]:
            raise InvalidRequest(f"{key} is fixed to '{_FIXED[key]}' in inferd")
        return None
    raise InvalidRequest(f"unknown trace setting '{key}'; known: {sorted([*_FIELD, *_FIXED])}")
