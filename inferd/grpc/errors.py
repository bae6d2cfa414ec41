"""ErrorKind -> gRPC status code: the one table the gRPC front-end uses."""

from __future__ import annotations

import logging
import uuid
from typing import Any, NoReturn, TypeAlias

import grpc

from inferd.errors import ErrorKind, InferdError

log = logging.getLogger(__name__)
# grpcio ships no type information, so the servicer context is untyped here.
Context: TypeAlias = Any

GRPC_STATUS = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.PAYLOAD_TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    ErrorKind.UNIMPLEMENTED: grpc.StatusCode.UNIMPLEMENTED,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
    ErrorKind.UNAUTHENTICATED: grpc.StatusCode.UNAUTHENTICATED,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
}


async def abort(context: Context, exc: Exception, method: str) -> NoReturn:
    """End the call with ``exc``'s status; an unexpected exception is logged under an error id."""
    if isinstance(exc, InferdError):
        await context.abort(GRPC_STATUS[exc.kind], exc.message)
    error_id = uuid.uuid4().hex[:12]
    log.error("unexpected error in %s (error id %s)", method, error_id, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal server error (error id {error_id})")
    raise AssertionError("context.abort returned")  # it always raises
