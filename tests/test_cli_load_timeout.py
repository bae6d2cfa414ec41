"""--load-timeout maps onto the lifecycle settings (INFERD_LIFECYCLE__LOAD_TIMEOUT_S in the environment)."""

from __future__ import annotations

import pytest

from inferd.cli import _settings_overrides
from inferd.settings import Settings


def test_the_flag_sets_the_load_timeout() -> None:
    assert Settings().lifecycle.load_timeout_s == 120.0
    settings = Settings(**_settings_overrides({"load_timeout": 7.5, "lazy": None}))
    assert settings.lifecycle.load_timeout_s == 7.5


def test_the_environment_sets_it_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_LIFECYCLE__LOAD_TIMEOUT_S", "30")
    assert Settings().lifecycle.load_timeout_s == 30.0
