"""Spans per inference request: request (server span), queue, batch execution (linked to every
request in the batch) and encode, with W3C trace context taken from REST headers or gRPC metadata.

Only built when tracing is on; the request path then pays for spans, and nothing when it is off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from inferd.errors import InferdError
from inferd.scheduler.tracehook import RequestTrace

log = logging.getLogger(__name__)
_PROPAGATOR = TraceContextTextMapPropagator()


class Tracing:
    """Owns the TracerProvider; front-ends ask it for one ``RequestSpan`` per inference request."""

    def __init__(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("inferd")

    @classmethod
    def from_environment(cls) -> Tracing:
        """OTLP over HTTP, configured by the standard OTEL_* variables (endpoint, headers, service name)."""
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        resource = Resource.create()  # reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES
        if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
            resource = resource.merge(Resource({"service.name": "inferd"}))
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        return cls(provider)

    def start_request(
        self, protocol: str, model: str, version: str | None, carrier: Mapping[str, str]
    ) -> RequestSpan:
        """``carrier``: the request's ``traceparent``/``tracestate`` headers or metadata (lower-case)."""
        parent = _PROPAGATOR.extract(carrier)
        span = self._tracer.start_span(
            f"infer {model}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"inferd.model": model, "inferd.version": version or "", "rpc.system": protocol},
        )
        return RequestSpan(self._tracer, span)

    def shutdown(self) -> None:
        self._provider.shutdown()


class RequestSpan(RequestTrace):
    """One request's span and its children; implements the batcher's RequestTrace hook."""

    __slots__ = ("_context", "_offset_ns", "_tracer", "span")

    def __init__(self, tracer: trace.Tracer, span: trace.Span) -> None:
        self._tracer = tracer
        self.span = span
        self._context = trace.set_span_in_context(span)
        # The batcher's clock is perf_counter_ns; spans need wall-clock (epoch) nanoseconds.
        self._offset_ns = time.time_ns() - time.perf_counter_ns()

    # The batcher calls these from its own bookkeeping: a tracing failure must never reach it (a
    # raising callback there would leave requests waiting), so they log and carry on.
    def queued(self, start_ns: int, end_ns: int) -> None:
        try:
            span = self._tracer.start_span(
                "queue", context=self._context, start_time=start_ns + self._offset_ns
            )
            span.end(end_time=end_ns + self._offset_ns)
        except Exception:
            log.exception("tracing: cannot record a queue span")

    def executed(self, batch: Sequence[RequestTrace], start_ns: int, end_ns: int, rows: int) -> None:
        try:
            links = [Link(m.span.get_span_context()) for m in batch if isinstance(m, RequestSpan)]
            span = self._tracer.start_span(
                "execute",
                context=self._context,
                links=links,
                start_time=start_ns + self._offset_ns,
                attributes={"inferd.batch.rows": rows, "inferd.batch.requests": len(batch)},
            )
            span.end(end_time=end_ns + self._offset_ns)
        except Exception:
            log.exception("tracing: cannot record an execution span")

    @contextmanager
    def encoding(self) -> Iterator[None]:
        with self._tracer.start_as_current_span("encode", context=self._context):
            yield

    def set_request_id(self, request_id: str | None) -> None:
        if request_id:
            self.span.set_attribute("inferd.request_id", request_id)

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            kind = error.kind.value if isinstance(error, InferdError) else "internal"
            self.span.set_attribute("inferd.error.kind", kind)
            self.span.set_status(Status(StatusCode.ERROR, str(error)))
        self.span.end()
