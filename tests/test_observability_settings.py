"""Observability settings and the CLI flags that map onto them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from inferd.cli import _settings_overrides
from inferd.settings import MetricsSettings, Settings


def test_price_comes_from_the_flag_or_the_instance_type_table() -> None:
    assert MetricsSettings().effective_price_per_hour is None
    assert MetricsSettings(price_per_hour=2.5).effective_price_per_hour == 2.5
    table = MetricsSettings(instance_type="big", prices={"big": 4.0, "small": 1.0})
    assert table.effective_price_per_hour == 4.0


def test_an_unpriced_instance_type_is_refused() -> None:
    with pytest.raises(ValidationError, match="no price for instance type 'huge' \\(priced: small\\)"):
        MetricsSettings(instance_type="huge", prices={"small": 1.0})


def test_instance_type_and_prices_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_METRICS__INSTANCE_TYPE", "c7i.large")
    monkeypatch.setenv("INFERD_METRICS__PRICES", '{"c7i.large": 0.09}')
    assert Settings().metrics.effective_price_per_hour == 0.09


def test_flags_map_onto_their_sections() -> None:
    flags = {
        "metrics_port": 0,
        "price_per_hour": 1.5,
        "no_dashboard": True,
        "log_format": "text",
        "access_log": True,
        "tracing": True,
        "no_metrics": None,
    }
    settings = Settings(**_settings_overrides(flags))
    assert settings.metrics.port == 0 and settings.metrics.price_per_hour == 1.5
    assert settings.metrics.enabled and not settings.metrics.dashboard
    assert settings.logs.format == "text" and settings.logs.access_log
    assert settings.tracing.enabled
    assert not Settings(**_settings_overrides({"no_metrics": True})).metrics.enabled
    assert Settings(**_settings_overrides({})).logs.access_log is False
