"""What a front-end hands the data plane for one inference call, and the tracing seam it uses.

A front-end only translates: it wraps its wire request in an ``InferCall`` (how to decode it, how to
encode the answer, where its trace context is) and maps the errors ``DataPlane.serve`` raises. The
sequence in between (servable check, decode, counting a rejected request, span, infer, encode) is the
data plane's, once for REST and gRPC alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Protocol, TypeVar

from inferd.scheduler.tracehook import RequestTrace
from inferd.types import Admission, InferRequest, InferResponse

Reply = TypeVar("Reply", covariant=True)


class InferCall(Protocol[Reply]):
    """One inference call as it arrived on the wire."""

    @property
    def protocol(self) -> str:
        """ "http" or "grpc" (the span's ``rpc.system``)."""
        ...

    @property
    def model(self) -> str: ...

    @property
    def version(self) -> str | None: ...

    @property
    def caller(self) -> str | None:
        """The API key id that made the call (None without API keys): it scopes response-cache entries."""
        ...

    def decode(self, admission: Admission | None) -> InferRequest:
        """The core request; raises an InferdError when the wire request is malformed. ``admission``
        checks the declared inputs against the model before any data is decoded (None: a lazy model
        not loaded yet, checked once decoded)."""
        ...

    def encode(self, request: InferRequest, response: InferResponse) -> Reply: ...

    def carrier(self) -> Mapping[str, str]:
        """The W3C trace context entries (read only when tracing is on)."""
        ...


class TracedRequest(RequestTrace, Protocol):
    """One request's span (tracing/tracer.py RequestSpan)."""

    def set_request_id(self, request_id: str | None) -> None: ...

    def encoding(self) -> AbstractContextManager[None]: ...

    def end(self, error: BaseException | None = None) -> None: ...


class RequestTracer(Protocol):
    """Starts a span per inference request (tracing/tracer.py Tracing)."""

    def start_request(
        self, protocol: str, model: str, version: str | None, carrier: Mapping[str, str]
    ) -> TracedRequest: ...
