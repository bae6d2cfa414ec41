"""A grpc.aio interceptor applying the security Gate to every RPC, as the REST front-end does.

Installed only when a Gate is configured. Each method's wrapped handler is built once and cached;
per call it reads the metadata (``authorization: Bearer <key>`` or ``x-api-key``), the peer address
and the model named in the request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from typing import Any, NoReturn

import grpc

from inferd.errors import InferdError, InvalidRequest, RateLimited
from inferd.grpc.errors import GRPC_STATUS
from inferd.security.apis import Api
from inferd.security.auth import bearer_or_api_key
from inferd.security.gate import Access, Gate, refused_key_id
from inferd.security.tokens import ACCOUNT

_Extract = Callable[[Any], Access]

# The id of the API key an admitted call presented, for the servicer (it scopes response-cache
# entries). Set in the call's own task, where grpc.aio then runs the servicer method; None without keys.
CALLER: ContextVar[str | None] = ContextVar("inferd_grpc_caller", default=None)


def _server(api: Api | None) -> _Extract:
    access = Access(api)
    return lambda request: access


def _named(api: Api) -> _Extract:  # requests with `name` and `version`; an empty name means all models
    return lambda request: Access(api, request.name or None, request.version or None)


def _model(api: Api) -> _Extract:  # requests with `model_name` (and `model_version`)
    return lambda request: Access(
        api, request.model_name or None, getattr(request, "model_version", "") or None
    )


_authenticated_only: _Extract = _server(None)

_RULES: dict[str, _Extract] = {
    "ServerLive": _server(Api.HEALTH),
    "ServerReady": _server(Api.HEALTH),
    "ModelReady": _named(Api.HEALTH),
    "ServerMetadata": _server(Api.METADATA),
    "ModelMetadata": _named(Api.METADATA),
    "ModelConfig": _named(Api.METADATA),
    "ModelStatistics": _named(Api.METRICS),
    "RepositoryIndex": _server(Api.REPOSITORY),
    "RepositoryModelLoad": _model(Api.REPOSITORY),
    "RepositoryModelUnload": _model(Api.REPOSITORY),
    # Shared memory registrations, log and trace settings: the admin scope, as over REST.
    "SystemSharedMemoryStatus": _server(Api.REPOSITORY),
    "SystemSharedMemoryRegister": _server(Api.REPOSITORY),
    "SystemSharedMemoryUnregister": _server(Api.REPOSITORY),
    "CudaSharedMemoryStatus": _server(Api.REPOSITORY),
    "CudaSharedMemoryRegister": _server(Api.REPOSITORY),
    "CudaSharedMemoryUnregister": _server(Api.REPOSITORY),
    "LogSettings": _server(Api.REPOSITORY),
    "TraceSetting": _model(Api.REPOSITORY),
    "ModelInfer": _model(Api.INFERENCE),
    "ModelStreamInfer": _model(Api.INFERENCE),
}


def _credential(metadata: Any) -> str | None:
    """The presented key; two authorization (or x-api-key) entries are refused, as over REST."""
    authorization = api_key = None
    for key, value in metadata or ():
        if key == "authorization":
            if authorization is not None:
                raise InvalidRequest("the authorization metadata must be sent once")
            authorization = value
        elif key == "x-api-key":
            if api_key is not None:
                raise InvalidRequest("the x-api-key metadata must be sent once")
            api_key = value
    return bearer_or_api_key(authorization, api_key)


def _address(peer: str) -> str:
    """'ipv4:127.0.0.1:5000' -> '127.0.0.1'; 'ipv6:[::1]:5000' -> '::1'."""
    address = peer.partition(":")[2]
    return address.rpartition(":")[0].strip("[]") or address


def _status(context: Any) -> str:
    code = context.code()
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


async def _deny(context: Any, exc: InferdError) -> NoReturn:
    trailing = (("retry-after", str(exc.retry_after_s)),) if isinstance(exc, RateLimited) else ()
    await context.abort(GRPC_STATUS[exc.kind], exc.message, trailing_metadata=trailing)
    raise AssertionError("context.abort returned")  # it always raises


class _Refused(Exception):
    """A stream message refused by the gate, raised through the servicer to end the stream."""

    def __init__(self, error: InferdError) -> None:
        super().__init__(error.message)
        self.error = error


class GateInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, gate: Gate) -> None:
        self._gate = gate
        self._handlers: dict[str, Any] = {}

    async def intercept_service(
        self,
        continuation: Callable[[Any], Awaitable[Any]],
        handler_call_details: Any,
    ) -> Any:
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:
                return None  # no such method: gRPC answers UNIMPLEMENTED
            wrapped = self._handlers[method] = self.guard(handler, method)
        return wrapped

    def guard(self, handler: Any, method: str) -> Any:
        """``handler`` (a grpc method handler for ``method``, "/package.Service/Method") wrapped in the
        gate's checks; also used where no grpc server hosts the handlers (inferd.ray)."""
        # A method added to the service without a rule still needs a valid key (fail closed).
        rule = _RULES.get(method.rpartition("/")[2], _authenticated_only)
        return self._wrap(handler, method, rule)

    def _wrap(self, handler: Any, method: str, extract: _Extract) -> Any:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, extract),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream, method, extract),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        # The service has no unary-stream or stream-unary methods; one added later must get a
        # wrapper here rather than be served unchecked.
        raise TypeError(f"{method}: no access check for this kind of method")

    def _unary(self, behavior: Any, method: str, extract: _Extract) -> Any:
        gate = self._gate

        async def guarded(request: Any, context: Any) -> Any:
            wanted = extract(request)
            client = _address(context.peer())
            try:
                principal = await gate.admit(_credential(context.invocation_metadata()), wanted, client)
            except InferdError as exc:
                gate.record("grpc", refused_key_id(exc), client, wanted, method, GRPC_STATUS[exc.kind].name)
                await _deny(context, exc)
            key_id = principal.id if principal is not None else None
            token = CALLER.set(key_id)
            try:
                response = await behavior(request, context)
            except BaseException:
                gate.record("grpc", key_id, client, wanted, method, _status(context))
                raise
            finally:
                CALLER.reset(token)
            gate.record("grpc", key_id, client, wanted, method, "OK")
            return response

        return guarded

    def _stream(self, behavior: Any, method: str, extract: _Extract) -> Any:
        gate = self._gate

        async def guarded(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            client = _address(context.peer())
            opening = Access(Api.INFERENCE)
            try:  # the key and its API are checked before the first message is read
                credential = _credential(context.invocation_metadata())
                opened = await gate.admit(credential, opening, client)
            except InferdError as exc:
                gate.record("grpc", refused_key_id(exc), client, opening, method, GRPC_STATUS[exc.kind].name)
                await _deny(context, exc)
            # One credential for the whole stream; the call's task iterates this generator.
            CALLER.set(opened.id if opened is not None else None)
            ACCOUNT.set(gate.token_account(opened, client, "grpc", method))

            async def admitted() -> AsyncIterator[Any]:
                # Each message is checked for its model and rate limit; a refusal ends the stream
                # with its status code, once the messages admitted before it are answered (the
                # servicer runs them concurrently). Admitted messages are audited as ADMITTED: their
                # outcome travels in-band in the stream.
                async for request in requests:
                    wanted = extract(request)
                    try:
                        principal = await gate.admit(credential, wanted, client)
                    except InferdError as exc:
                        status = GRPC_STATUS[exc.kind].name
                        gate.record("grpc", refused_key_id(exc), client, wanted, method, status)
                        raise _Refused(exc) from None
                    key_id = principal.id if principal is not None else None
                    gate.record("grpc", key_id, client, wanted, method, "ADMITTED")
                    yield request

            try:
                async for response in behavior(admitted(), context):
                    yield response
            except _Refused as refused:
                await _deny(context, refused.error)
            except RateLimited as exc:  # a spent token budget (grpc/streaming.py)
                gate.record("grpc", exc.key_id, client, opening, method, GRPC_STATUS[exc.kind].name)
                await _deny(context, exc)

        return guarded
