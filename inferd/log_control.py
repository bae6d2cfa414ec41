"""Triton's logging extension: read and change the log settings of a running server.

Triton's settings map onto Python logging's root logger: ``log_verbose_level`` > 0 is DEBUG, else
the lowest of ``log_info``/``log_warning``/``log_error`` that is on sets the level (all off: nothing
is logged). ``log_format`` is inferd's ``json`` or ``text`` (Triton's ``default`` and ``ISO8601``
select ``text``). ``log_file`` is reported and never changed: a request never names a server path.
"""

from __future__ import annotations

import logging

from inferd.errors import InvalidRequest
from inferd.logging_setup import JsonFormatter, text_formatter

Setting = bool | int | str
_SWITCHES = {"log_info": logging.INFO, "log_warning": logging.WARNING, "log_error": logging.ERROR}
_FORMATS = {"json": "json", "text": "text", "default": "text", "ISO8601": "text"}
_OFF = logging.CRITICAL + 10


def log_settings() -> dict[str, Setting]:
    root = logging.getLogger()
    level = root.getEffectiveLevel()
    return {
        "log_file": "",
        "log_info": level <= logging.INFO,
        "log_warning": level <= logging.WARNING,
        "log_error": level <= logging.ERROR,
        "log_verbose_level": 1 if level <= logging.DEBUG else 0,
        "log_format": _current_format(root),
    }


def update_log_settings(changes: dict[str, object]) -> dict[str, Setting]:
    """Apply ``changes`` (all checked first: a bad one changes nothing); returns the settings now."""
    wanted = log_settings()
    for key, value in changes.items():
        if key in _SWITCHES:
            if not isinstance(value, bool):
                raise InvalidRequest(f"log setting '{key}' must be true or false")
        elif key == "log_verbose_level":
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidRequest("log setting 'log_verbose_level' must be a non-negative integer")
        elif key == "log_format":
            if value not in _FORMATS:
                raise InvalidRequest(f"log setting 'log_format' must be one of {sorted(_FORMATS)}")
        elif key == "log_file":
            if value not in ("", None):
                raise InvalidRequest(
                    "log_file cannot be set through the API: start inferd with the log destination"
                )
            continue
        else:
            raise InvalidRequest(f"unknown log setting '{key}'; known: {sorted(log_settings())}")
        wanted[key] = value  # checked just above
    root = logging.getLogger()
    root.setLevel(_level(wanted))
    if "log_format" in changes:
        formatter = JsonFormatter() if _FORMATS[str(wanted["log_format"])] == "json" else text_formatter()
        for handler in root.handlers:
            handler.setFormatter(formatter)
    return log_settings()


def _level(settings: dict[str, Setting]) -> int:
    if settings["log_verbose_level"]:
        return logging.DEBUG
    on = [level for key, level in _SWITCHES.items() if settings[key]]
    return min(on) if on else _OFF


def _current_format(root: logging.Logger) -> str:
    for handler in root.handlers:
        return "json" if isinstance(handler.formatter, JsonFormatter) else "text"
    return "text"
