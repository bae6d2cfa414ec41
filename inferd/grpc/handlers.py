"""The service's method handlers, with request deserializers that refuse what they cannot read.

grpc.aio deserializes a request before any handler or interceptor code runs, and an exception there
reaches the client as UNKNOWN. Here a message that does not parse, or that the inference parse refuses
(``parse_infer_request``: too many fields, too many dimensions), becomes a ``Refused`` marker, which
interceptors can read as an empty request, and which the method's wrapper answers with
INVALID_ARGUMENT: a client error, reported as one.

ModelInfer and ModelStreamInfer requests are parsed as the light ModelInferRequest (see
proto/inferd_light.proto), whose typed contents stay bytes until the model's admission has checked
the declared shapes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message

from inferd.errors import InvalidRequest
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.protocol.grpc_codec import parse_infer_request

SERVICE = "GRPCInferenceService"

Unary = Callable[[Any, Any], Awaitable[Any]]
Stream = Callable[[AsyncIterator[Any], Any], AsyncIterator[Any]]

# Methods whose requests are parsed by something other than their message type's FromString.
_PARSERS: dict[str, Callable[[bytes], Message]] = {
    "ModelInfer": parse_infer_request,
    "ModelStreamInfer": parse_infer_request,
}


class Refused:
    """A request the deserializer refused, with the reason. It reads as an empty request (the
    fields interceptors look at are empty), so that the security gate still checks the caller first."""

    __slots__ = ("reason",)
    name = version = model_name = model_version = ""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def add_servicer(servicer: object, server: grpc.aio.Server) -> None:
    """Register ``servicer``'s methods (those of the service in grpc_service.proto) on ``server``."""
    service = pb.DESCRIPTOR.services_by_name[SERVICE]
    handlers = {}
    for method in service.methods:
        request_type: type[Message] = getattr(pb, method.input_type.name)
        response_type: type[Message] = getattr(pb, method.output_type.name)
        parse = _PARSERS.get(method.name, request_type.FromString)
        deserialize = _tolerant(parse, method.input_type.full_name)
        behavior = getattr(servicer, method.name)
        if method.client_streaming and method.server_streaming:
            handler = grpc.stream_stream_rpc_method_handler(
                _checked_stream(behavior),
                request_deserializer=deserialize,
                response_serializer=response_type.SerializeToString,
            )
        elif not method.client_streaming and not method.server_streaming:
            handler = grpc.unary_unary_rpc_method_handler(
                _checked_unary(behavior),
                request_deserializer=deserialize,
                response_serializer=response_type.SerializeToString,
            )
        else:  # the service has none; one added later needs its own wrapper here
            raise TypeError(f"{method.name}: no handler for this kind of method")
        handlers[method.name] = handler
    name = service.full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, handlers),))
    server.add_registered_method_handlers(name, handlers)


def _tolerant(parse: Callable[[bytes], Message], full_name: str) -> Callable[[bytes], Message | Refused]:
    undecodable = Refused(f"the request is not a valid {full_name} protobuf message")

    def deserialize(raw: bytes) -> Message | Refused:
        try:
            return parse(raw)
        except DecodeError:
            return undecodable
        except InvalidRequest as exc:
            return Refused(exc.message)

    return deserialize


def _checked_unary(behavior: Unary) -> Unary:
    async def checked(request: Any, context: Any) -> Any:
        if isinstance(request, Refused):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        return await behavior(request, context)

    return checked


def _checked_stream(behavior: Stream) -> Stream:
    async def checked(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async def decoded() -> AsyncIterator[Any]:
            async for request in requests:
                if isinstance(request, Refused):  # ends the stream, as a refused unary call ends
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
                yield request

        async for response in behavior(decoded(), context):
            yield response

    return checked
