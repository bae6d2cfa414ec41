"""Prometheus counters of the security gate, read from its plain counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from inferd.security.gate import Gate


class SecurityCollector(Collector):
    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    def collect(self) -> Iterable[Metric]:
        refusals = CounterMetricFamily(
            "inferd_security_refusals",
            "Requests refused by the security gate, by reason (unauthenticated, permission_denied, "
            "invalid_argument, rate, quota, tokens, limiter_unavailable)",
            labels=["reason"],
        )
        for reason, count in sorted(self._gate.refusals.items()):
            refusals.add_metric([reason], count)
        yield refusals
        limiter = self._gate.limiter
        errors = getattr(limiter, "errors", None)
        if errors is not None:  # the Redis-backed limiter
            yield CounterMetricFamily(
                "inferd_rate_limit_redis_errors", "Rate-limit calls to Redis that failed", value=errors
            )
            yield CounterMetricFamily(
                "inferd_rate_limit_decided_without_redis",
                "Requests let through or refused by the failure policy while Redis was unreachable",
                value=getattr(limiter, "decided_without_redis", 0),
            )
        budgets = self._gate.tokens
        if budgets is not None:
            charged = CounterMetricFamily(
                "inferd_tokens_charged",
                "Prompt + generated tokens charged to callers of generative routes, by API key id "
                '(key_id="" for callers without a key)',
                labels=["key_id"],
            )
            for key_id, count in sorted(budgets.charged.items()):
                charged.add_metric([key_id], count)
            if budgets.charged_without_key:
                charged.add_metric([""], budgets.charged_without_key)
            yield charged
        if self._gate.audit is not None:
            yield CounterMetricFamily(
                "inferd_audit_records_dropped",
                "Audit records dropped because the disk did not keep up",
                value=self._gate.audit.dropped,
            )
