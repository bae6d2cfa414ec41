"""One inferd data plane inside a Ray Serve replica.

Ray Serve owns the network side: its proxies (one per node) accept REST and gRPC, route each call
to a replica and balance across nodes; its controller starts, replaces and autoscales replicas. A
replica holds what one inferd process holds past its front-ends: the model repository, batchers,
cache and security gate. Calls arrive as Ray hands them over:

- REST: the raw ASGI app of the plain server (``RestApp``), mounted with ``serve.ingress``, so routes,
  codecs, limits and errors are the same as ``inferd serve``'s.
- gRPC: Ray's proxy registers inferd's own handlers (``inferd.grpc.handlers.add_servicer``, so the
  light request parse and its refusals run in the proxy) and calls the replica method named after
  the RPC with the parsed request; here it runs through the same handler (and security gate) the
  grpc.aio server would run, with Ray's context standing in for grpc's.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc

from inferd.app import Server
from inferd.dataplane.dataplane import DataPlane
from inferd.grpc.access import GateInterceptor
from inferd.grpc.handlers import SERVICE, add_servicer
from inferd.grpc.servicer import InferenceServicer
from inferd.http.app import RestApp
from inferd.protocol._generated import grpc_service_pb2 as pb
from inferd.settings import Settings

log = logging.getLogger(__name__)

# Unary RPCs a replica answers; ModelStreamInfer needs Ray's bidirectional streaming, not offered here.
UNARY_METHODS = tuple(
    method.name
    for method in pb.DESCRIPTOR.services_by_name[SERVICE].methods
    if not method.client_streaming and not method.server_streaming
)


class _Aborted(Exception):
    """Raised by ``_RayContext.abort``: the status is already set on Ray's context."""


class _RayContext:
    """The part of grpc.aio's servicer context that inferd's handlers use, over Ray's context."""

    __slots__ = ("_context",)

    def __init__(self, context: Any) -> None:
        self._context = context

    async def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        self._context.set_code(code)
        self._context.set_details(details)
        raise _Aborted

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def peer(self) -> str:
        return str(self._context.peer())

    def code(self) -> Any:
        return self._context.code()


class _Handlers:
    """Collects the method handlers ``add_servicer`` would register on a grpc server."""

    def __init__(self) -> None:
        self.by_method: dict[str, Any] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers come again, by name, below

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        for name, handler in handlers.items():
            self.by_method[name] = (f"/{service}/{name}", handler)


class RayDataPlane(DataPlane):
    # A region is a file on the node of the replica that registered it; Ray routes the next call to
    # any replica, on any node (docs/deploy.md, "Ray Serve").
    no_shared_memory = (
        "system shared memory is not available on Ray Serve: a registration would reach one replica "
        "on one node; use inferd serve on the client's machine for it"
    )


class _ReplicaServer(Server):
    dataplane_class = RayDataPlane


class InferdReplica:
    """A Ray Serve deployment class (see ``inferd.ray.app``): REST via ``serve.ingress``, gRPC methods
    added by name below."""

    async def __init__(self, settings: dict[str, Any]) -> None:  # type: ignore[misc]
        # Ray runs an async constructor on the replica's event loop: models load, and their batchers
        # start, on the loop that will serve them.
        self._server = _ReplicaServer(Settings.model_validate(settings))
        server = self._server
        server.security.start()
        await server.load_models_async()
        server.watch_repository()
        if server.metrics is not None:
            server.metrics.start()
        if server.drift is not None:
            server.drift.start()
        collected = _Handlers()
        add_servicer(InferenceServicer(server.dataplane), collected)
        gate = server.security.gate
        guard = GateInterceptor(gate).guard if gate is not None else None
        self._unary: dict[str, Callable[[Any, Any], Awaitable[Any]]] = {}
        for name, (path, handler) in collected.by_method.items():
            if guard is not None:
                handler = guard(handler, path)
            if handler.unary_unary is not None:
                self._unary[name] = handler.unary_unary
        log.info("inferd replica ready: %d model(s)", len(await server.repository.index()))

    def __serve_build_asgi_app__(self) -> RestApp:
        server = self._server
        return RestApp(
            server.dataplane, server.settings.http.max_body_bytes, server.pages(), server.security.gate
        )

    async def call_unary(self, method: str, request: Any, context: Any) -> Any:
        try:
            return await self._unary[method](request, _RayContext(context))
        except _Aborted:
            # Ray answers with the status set on its context; the message returned is not sent.
            response_type: type[Any] = getattr(pb, f"{method}Response")
            return response_type()

    async def __del__(self) -> None:
        """Ray's graceful shutdown has already waited for this replica's calls; finish the rest."""
        self._server.dataplane.start_draining()
        await self._server.close_components()


def _rpc(method: str) -> Callable[..., Awaitable[Any]]:
    async def rpc(self: InferdReplica, request: Any, grpc_context: Any) -> Any:
        return await self.call_unary(method, request, grpc_context)

    rpc.__name__ = rpc.__qualname__ = method
    return rpc


for _method in UNARY_METHODS:
    setattr(InferdReplica, _method, _rpc(_method))
