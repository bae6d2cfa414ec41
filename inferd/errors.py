"""The transport-free error tree. Front-ends map ``ErrorKind`` to HTTP statuses and gRPC codes.

Hierarchy::

    InferdError                  (kind decides the status on the wire)
      InvalidRequest             INVALID_ARGUMENT - malformed or does not match the model signature
      NotFound                   NOT_FOUND        - unknown model or version
      Unavailable                UNAVAILABLE      - model not ready, server draining, queue full
        NotLoadedYet             UNAVAILABLE      - a --lazy model that loads on its first request
      PayloadTooLarge            PAYLOAD_TOO_LARGE- body over the configured limit
      DeadlineExceeded           DEADLINE_EXCEEDED- the request's timeout passed while it was queued
        ExecutionTimeout         DEADLINE_EXCEEDED- its batch ran past the model's execution_timeout_s
      ExecutionError             INTERNAL         - the runtime failed while running a batch
        InstanceCrashed          INTERNAL         - an instance's worker process died holding it
      ModelLoadError             INTERNAL         - a model could not be loaded (start-up, load API)
      Unauthenticated            UNAUTHENTICATED  - no API key, or one that is not known
      PermissionDenied           PERMISSION_DENIED- a known key not allowed this API or model
      RateLimited                RESOURCE_EXHAUSTED - over a rate limit or daily quota; says when to retry
"""

from __future__ import annotations

import enum


class ErrorKind(enum.Enum):
    INVALID_ARGUMENT = "invalid_argument"
    NOT_FOUND = "not_found"
    UNAVAILABLE = "unavailable"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    UNIMPLEMENTED = "unimplemented"
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    INTERNAL = "internal"


class InferdError(Exception):
    """Base of every error inferd reports to a client; the message is safe to show."""

    kind: ErrorKind = ErrorKind.INTERNAL
    # The client's request id, when the request was refused while being decoded (for logs and spans).
    request_id: str | None = None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(InferdError):
    kind = ErrorKind.INVALID_ARGUMENT


class NotFound(InferdError):
    kind = ErrorKind.NOT_FOUND


class Unavailable(InferdError):
    kind = ErrorKind.UNAVAILABLE


class NotLoadedYet(Unavailable):
    """Raised by the repository for a lazy model; the data plane loads it and retries."""


class PayloadTooLarge(InferdError):
    kind = ErrorKind.PAYLOAD_TOO_LARGE


class DeadlineExceeded(InferdError):
    kind = ErrorKind.DEADLINE_EXCEEDED


class ExecutionTimeout(DeadlineExceeded):
    """The model did not return within its execution timeout; the instance was replaced."""


class Unsupported(InferdError):
    kind = ErrorKind.UNIMPLEMENTED


class ExecutionError(InferdError):
    kind = ErrorKind.INTERNAL

    def __init__(self, message: str, error_id: str | None = None) -> None:
        super().__init__(message)
        # Set when user code failed: the id its traceback was logged under (the data plane logs the
        # request's id beside it).
        self.error_id = error_id


class InstanceCrashed(ExecutionError):
    """The worker process of an instance died while holding the batch (``instance_kind: process``);
    the batch fails as a whole (rerunning its requests one by one would only crash it again)."""


class ModelLoadError(InferdError):
    kind = ErrorKind.INTERNAL


class Unauthenticated(InferdError):
    kind = ErrorKind.UNAUTHENTICATED


class PermissionDenied(InferdError):
    kind = ErrorKind.PERMISSION_DENIED

    def __init__(self, message: str, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id  # for the audit log: who was refused


class RateLimited(InferdError):
    kind = ErrorKind.RESOURCE_EXHAUSTED

    def __init__(self, message: str, retry_after_s: int, key_id: str | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.key_id = key_id


# Triton's wording for the errors its clients and tests match on, as a prefix to inferd's detail
# (docs/triton-compat.md). Only these short phrases follow Triton; the rest of a message is inferd's.
def unknown_model(name: str) -> str:
    return f"Request for unknown model: '{name}' is not found"


def unknown_version(name: str, version: str, detail: str) -> str:
    return f"Request for unknown model: '{name}' version {version} is not found ({detail})"


def not_ready(name: str, reason: str | None) -> str:
    return (
        f"Request for unknown model: '{name}' has no available versions (not ready: {reason or 'not loaded'})"
    )


def unknown_input(name: str, model: str, detail: str) -> str:
    return f"unexpected inference input '{name}' for model '{model}'; {detail}"


def unknown_output(name: str, model: str, detail: str) -> str:
    return f"unexpected inference output '{name}' for model '{model}'; {detail}"
