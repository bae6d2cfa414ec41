"""TraceSettings: which requests get a span under trace_level, trace_rate and trace_count."""

from __future__ import annotations

import pytest

from inferd.dataplane.trace_settings import TraceSettings
from inferd.errors import InvalidRequest


def test_rate_and_count_select_requests_per_scope() -> None:
    traces = TraceSettings(available=True)
    assert all(traces.sample("m") for _ in range(5))
    traces.update({"trace_rate": "3", "trace_count": "2"})
    assert [traces.sample("m") for _ in range(9)] == [
        False,
        False,
        True,
        False,
        False,
        True,
        False,
        False,
        False,
    ]
    assert traces.settings()["trace_count"] == "0"
    traces.update({"trace_level": ["OFF"]}, model="quiet")
    assert not traces.sample("quiet") and traces.settings("quiet")["trace_level"] == ["OFF"]
    traces.update({"trace_level": None}, model="quiet")  # cleared: the server's settings again
    assert traces.settings("quiet")["trace_level"] == ["TIMESTAMPS"]


def test_bad_settings_change_nothing() -> None:
    traces = TraceSettings(available=True)
    for bad in ({"trace_level": ["TENSORS"]}, {"trace_rate": "0"}, {"trace_file": "/x"}, {"nope": "1"}):
        with pytest.raises(InvalidRequest):
            traces.update({"trace_rate": "5", **bad})
        assert traces.settings()["trace_rate"] == "1"
