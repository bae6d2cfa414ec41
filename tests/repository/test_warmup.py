"""The cold-start figures a load logs: only what was measured."""

from __future__ import annotations

from inferd.repository.warmup import ColdStart


def test_describe_with_warm_up() -> None:
    figures = ColdStart(load_ms=4.12345, first_inference_ms=0.36, warm_p50_ms=0.027, rss_delta_mb=12.54)
    assert figures.describe() == "load 4.123 ms, first inference 0.36 ms, warm p50 0.027 ms, RSS +12.5 MiB"


def test_describe_without_warm_up_or_rss() -> None:
    assert ColdStart(load_ms=4.1, first_inference_ms=None, warm_p50_ms=None).describe() == (
        "load 4.1 ms, no warm-up"
    )


def test_describe_one_warm_up_request_and_shrinking_memory() -> None:
    figures = ColdStart(load_ms=2.0, first_inference_ms=0.5, warm_p50_ms=None, rss_delta_mb=-0.25)
    assert figures.describe() == "load 2.0 ms, first inference 0.5 ms, RSS -0.2 MiB"
