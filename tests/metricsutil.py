"""Read a Prometheus text exposition into {(name, labels): value} for assertions."""

from __future__ import annotations

from httputil import request
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: str, path: str = "/metrics") -> Samples:
    status, headers, body = request(address, "GET", path)
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)
