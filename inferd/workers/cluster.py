"""The data plane of one worker: inference stays local; the control plane and the sums go through the
supervisor, which fans each call out to every worker (inferd/workers/supervisor.py)."""

from __future__ import annotations

from typing import Any

from inferd.dataplane.control import ControlPlane
from inferd.dataplane.dataplane import DataPlane
from inferd.errors import InvalidRequest
from inferd.workers import wire

# Reads (readiness, statistics, metrics) answer in milliseconds; this bounds a hung worker.
READ_TIMEOUT_S = 10.0


class SupervisorLink:
    """The worker's end of the control channel."""

    def __init__(self, socket_path: str, control_timeout_s: float) -> None:
        self.socket_path = socket_path
        self.control_timeout_s = control_timeout_s

    async def ask(self, op: str, **args: Any) -> Any:
        return await wire.call(self.socket_path, op, READ_TIMEOUT_S, **args)

    async def control(self, call: str, **args: Any) -> Any:
        return await wire.call(self.socket_path, "control", self.control_timeout_s, call=call, **args)


class ClusterControlPlane(ControlPlane):
    """A repository call that lands here takes effect on every worker before it answers; statistics
    are every worker's. ``apply`` runs a call fanned out by the supervisor locally."""

    link: SupervisorLink | None = None

    def _link(self) -> SupervisorLink:
        assert self.link is not None, "the worker sets its link before serving"
        return self.link

    async def statistics(self, name: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
        stats: list[dict[str, Any]] = await self._link().ask("stats", name=name, version=version)
        return stats

    async def load_model(self, name: str, config_override: str | None = None) -> None:
        self._require_explicit("load")
        await self._link().control("load", name=name, config=config_override)

    async def unload_model(self, name: str) -> None:
        self._require_explicit("unload")
        await self._link().control("unload", name=name)

    async def start_rollout(self, name: str, document: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = await self._link().control("rollout", name=name, document=document)
        return result

    async def promote(self, name: str) -> str:
        return str(await self._link().control("promote", name=name))

    async def rollback(self, name: str) -> str:
        return str(await self._link().control("rollback", name=name))

    async def apply(self, call: str, args: dict[str, Any]) -> Any:
        """Run one control call on this worker only."""
        name = str(args["name"])
        if call == "load":
            return await ControlPlane.load_model(self, name, args.get("config"))
        if call == "unload":
            return await ControlPlane.unload_model(self, name)
        if call == "rollout":
            return await ControlPlane.start_rollout(self, name, dict(args["document"]))
        if call == "promote":
            return await ControlPlane.promote(self, name)
        if call == "rollback":
            return await ControlPlane.rollback(self, name)
        raise InvalidRequest(f"unknown control call {call!r}")


class ClusterDataPlane(DataPlane):
    """Inference stays local; readiness is every worker's, and the control plane spans the workers
    (ClusterControlPlane, whose link the worker sets before serving)."""

    control_class = ClusterControlPlane
    control: ClusterControlPlane
    # A region registered on one worker would be unknown to the others (docs/triton-compat.md).
    no_shared_memory = (
        "system shared memory is not available with --workers: each worker would hold its own "
        "registrations; run without --workers to use it"
    )

    async def server_ready(self) -> bool:
        return bool(self.ready() and await self.control._link().ask("ready"))
