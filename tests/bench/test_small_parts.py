"""URL parsing, cost, the server-side split and level lists."""

from __future__ import annotations

import math

import pytest

from inferd.bench.cost import ON_DEMAND_USD_PER_HOUR, cost_per_1000, hourly_price
from inferd.bench.credentials import ClientTls
from inferd.bench.endpoint import BenchError, Endpoint
from inferd.bench.scenarios import parse_levels
from inferd.bench.serverstats import split


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8000", Endpoint("http", "127.0.0.1", 8000)),
        ("127.0.0.1:9000", Endpoint("http", "127.0.0.1", 9000)),
        ("grpc://localhost", Endpoint("grpc", "localhost", 8001)),
        ("HTTP://h:1/", Endpoint("http", "h", 1)),
        ("https://h", Endpoint("http", "h", 8000, ClientTls())),
        ("grpcs://h:9", Endpoint("grpc", "h", 9, ClientTls())),
    ],
)
def test_endpoint_parse(url: str, expected: Endpoint) -> None:
    assert Endpoint.parse(url) == expected


@pytest.mark.parametrize("url", ["ftp://h:1", "http://h:1/v2", "http://:80", "http://h:99999"])
def test_endpoint_rejects(url: str) -> None:
    with pytest.raises(BenchError):
        Endpoint.parse(url)


def test_cost() -> None:
    # $3.60/h is $0.001/s; at 1,000 inferences/s that is $0.001 per 1,000.
    assert cost_per_1000(3.6, 1000) == pytest.approx(0.001)
    assert cost_per_1000(3.6, 0) == math.inf
    assert hourly_price(1.5, "c6i.large") == 1.5
    assert hourly_price(None, "c6i.large") == ON_DEMAND_USD_PER_HOUR["c6i.large"][0]
    assert hourly_price(None, None) is None
    with pytest.raises(ValueError, match="no price known"):
        hourly_price(None, "z9.huge")
    with pytest.raises(ValueError):
        hourly_price(-1, None)


def _stats(success: int, queue_ns: int, infer_ns: int, executions: int, inferences: int) -> dict[str, object]:
    # gRPC's JSON form writes 64-bit counters as strings: mix both forms.
    return {
        "execution_count": str(executions),
        "inference_count": inferences,
        "inference_stats": {
            "success": {"count": str(success), "ns": str(success * 1_000_000)},
            "queue": {"count": success, "ns": queue_ns},
            "compute_input": {"count": success, "ns": 0},
            "compute_infer": {"count": success, "ns": infer_ns},
            "compute_output": {"count": success, "ns": 0},
        },
    }


def test_server_split_is_the_difference_of_two_snapshots() -> None:
    before = _stats(10, 10_000, 50_000, 10, 10)
    after = _stats(110, 10_000 + 100 * 200_000, 50_000 + 100 * 300_000, 35, 110)
    result = split(before, after)
    assert result is not None
    assert result.requests == 100
    assert result.queue_s == pytest.approx(200e-6)
    assert result.compute_s == pytest.approx(300e-6)
    assert result.total_s == pytest.approx(1e-3)
    assert result.mean_batch == pytest.approx(4.0)
    assert split(None, after) is None
    assert split(after, after) is None  # nothing ran


def test_parse_levels() -> None:
    assert parse_levels("1,8,64", int) == [1, 8, 64]
    assert parse_levels("1:9:4", int) == [1, 5, 9]
    assert parse_levels("2:4", int) == [2, 3, 4]
    assert parse_levels("100.5,200", float) == [100.5, 200.0]
    for bad in ("", "0,1", "a", "4:1", "1:4:0"):
        with pytest.raises(ValueError):
            parse_levels(bad, int)


def test_json_output_has_no_nan() -> None:
    from inferd.bench.command import _finite

    document = {"latency_ms": {"p50": math.nan, "max": math.inf}, "runs": [1.5, (math.nan,)], "name": "x"}
    assert _finite(document) == {"latency_ms": {"p50": None, "max": None}, "runs": [1.5, [None]], "name": "x"}
