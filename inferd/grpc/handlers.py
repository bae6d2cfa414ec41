"""The service's method handlers, with request deserializers that refuse undecodable protobuf.

grpc.aio deserializes a request before any handler or interceptor code runs, and an exception there
reaches the client as UNKNOWN. Here a message that does not parse becomes a marker (an empty message
of its type, so interceptors can still read its fields), and the method's wrapper answers it with
INVALID_ARGUMENT: a client error, reported as one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from inferd.protocol._generated import grpc_service_pb2 as pb

SERVICE = "GRPCInferenceService"

Unary = Callable[[Any, Any], Awaitable[Any]]
Stream = Callable[[AsyncIterator[Any], Any], AsyncIterator[Any]]


def add_servicer(servicer: object, server: grpc.aio.Server) -> None:
    """Register ``servicer``'s methods (those of the service in grpc_service.proto) on ``server``."""
    service = pb.DESCRIPTOR.services_by_name[SERVICE]
    handlers = {}
    for method in service.methods:
        request_type: type[Message] = getattr(pb, method.input_type.name)
        response_type: type[Message] = getattr(pb, method.output_type.name)
        undecodable = request_type()
        deserialize = _tolerant(request_type, undecodable)
        behavior = getattr(servicer, method.name)
        if method.client_streaming and method.server_streaming:
            handler = grpc.stream_stream_rpc_method_handler(
                _checked_stream(behavior, undecodable),
                request_deserializer=deserialize,
                response_serializer=response_type.SerializeToString,
            )
        elif not method.client_streaming and not method.server_streaming:
            handler = grpc.unary_unary_rpc_method_handler(
                _checked_unary(behavior, undecodable),
                request_deserializer=deserialize,
                response_serializer=response_type.SerializeToString,
            )
        else:  # the service has none; one added later needs its own wrapper here
            raise TypeError(f"{method.name}: no handler for this kind of method")
        handlers[method.name] = handler
    name = service.full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


def _tolerant(request_type: type[Message], undecodable: Message) -> Callable[[bytes], Message]:
    parse = request_type.FromString

    def deserialize(raw: bytes) -> Message:
        try:
            return parse(raw)
        except DecodeError:
            return undecodable

    return deserialize


def _refusal(undecodable: Message) -> str:
    return f"the request is not a valid {undecodable.DESCRIPTOR.full_name} protobuf message"


def _checked_unary(behavior: Unary, undecodable: Message) -> Unary:
    async def checked(request: Any, context: Any) -> Any:
        if request is undecodable:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _refusal(undecodable))
        return await behavior(request, context)

    return checked


def _checked_stream(behavior: Stream, undecodable: Message) -> Stream:
    async def checked(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async def decoded() -> AsyncIterator[Any]:
            async for request in requests:
                if request is undecodable:  # ends the stream: its framing can no longer be trusted
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, _refusal(undecodable))
                yield request

        async for response in behavior(decoded(), context):
            yield response

    return checked
