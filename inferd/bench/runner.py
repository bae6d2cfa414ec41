"""Run one load (closed or open loop) in this process or split across several generator processes.

Several processes help when one Python core cannot keep up with the server (watch the generator CPU
figure in the report). Each process gets an equal share: concurrency is divided between them and the
Poisson rate too (the sum of independent Poisson streams is a Poisson stream of the summed rate).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import multiprocessing.queues
import multiprocessing.synchronize
import queue
import time
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from inferd.bench.clients import GrpcSubmitter, HttpSubmitter, Submitter
from inferd.bench.endpoint import BenchError, Endpoint
from inferd.bench.load import LoadResult, closed_loop, open_loop, poisson_schedule
from inferd.bench.payloads import RestPayload


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """Everything one generator process needs; plain data so it crosses a process boundary."""

    endpoint: Endpoint
    model: str
    version: str
    # REST body (and its JSON header length for binary data) or a serialized gRPC request.
    rest_payload: RestPayload | None
    grpc_payload: bytes | None
    mode: Literal["closed", "open"]
    concurrency: int = 1
    rate: float = 0.0
    warmup_s: float = 1.0
    duration_s: float = 10.0
    drain_s: float = 10.0
    max_outstanding: int = 1000
    seed: int = 0


def _submitter(spec: LoadSpec) -> Submitter:
    if spec.endpoint.protocol == "grpc":
        assert spec.grpc_payload is not None
        return GrpcSubmitter(spec.endpoint, spec.grpc_payload)
    assert spec.rest_payload is not None
    return HttpSubmitter(spec.endpoint, spec.model, spec.version, spec.rest_payload)


async def run_async(spec: LoadSpec) -> LoadResult:
    submitter = _submitter(spec)
    await submitter.open()
    try:
        if spec.mode == "closed":
            return await closed_loop(
                submitter, spec.concurrency, spec.warmup_s, spec.duration_s, spec.drain_s
            )
        schedule = poisson_schedule(
            spec.rate, spec.warmup_s + spec.duration_s, np.random.default_rng(spec.seed)
        )
        return await open_loop(
            submitter, schedule, spec.warmup_s, spec.duration_s, spec.drain_s, spec.max_outstanding
        )
    finally:
        await submitter.close()


def _allow_many_sockets(needed: int) -> None:
    """HTTP/1.1 holds one socket per request in flight: lift the soft open-files limit towards the
    hard one when the run may need more (the common default soft limit is 1024)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed + 256
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run_here(spec: LoadSpec) -> LoadResult:
    """One run on a fresh event loop (uvloop for REST where installed; grpc.aio wants asyncio's own)."""
    _allow_many_sockets(spec.max_outstanding if spec.mode == "open" else spec.concurrency)
    if spec.endpoint.protocol == "http":
        try:
            import uvloop
        except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
            pass
        else:
            return uvloop.run(run_async(spec))
    return asyncio.run(run_async(spec))


def _shares(spec: LoadSpec, processes: int) -> list[LoadSpec]:
    if spec.mode == "closed":
        counts = [
            spec.concurrency // processes + (i < spec.concurrency % processes) for i in range(processes)
        ]
        return [replace(spec, concurrency=c, seed=spec.seed + i) for i, c in enumerate(counts) if c > 0]
    return [
        replace(
            spec,
            rate=spec.rate / processes,
            max_outstanding=max(1, spec.max_outstanding // processes),
            seed=spec.seed + i,
        )
        for i in range(processes)
    ]


def _child(
    spec: LoadSpec,
    barrier: multiprocessing.synchronize.Barrier,
    out: multiprocessing.queues.Queue[LoadResult | str],
) -> None:
    barrier.wait()  # start together: the shares' windows must overlap for their throughputs to add up
    try:
        out.put(run_here(spec))
    except BenchError as exc:  # e.g. the server went away: the parent says why, in one line
        out.put(str(exc))


def run(spec: LoadSpec, processes: int = 1) -> LoadResult:
    """Run ``spec``; with ``processes > 1`` in that many spawned generator processes, merged."""
    if processes <= 1:
        return run_here(spec)
    shares = _shares(spec, processes)
    context = multiprocessing.get_context("spawn")  # fork is unsafe once grpc or a loop has started
    barrier = context.Barrier(len(shares))
    results: multiprocessing.queues.Queue[LoadResult | str] = context.Queue()
    children = [context.Process(target=_child, args=(share, barrier, results)) for share in shares]
    for child in children:
        child.start()
    deadline = time.monotonic() + 120 + spec.warmup_s + spec.duration_s + spec.drain_s
    parts: list[LoadResult] = []
    try:
        while len(parts) < len(children):
            try:
                part = results.get(timeout=0.5)
            except queue.Empty:
                crashed = [c.exitcode for c in children if c.exitcode not in (None, 0)]
                if crashed or time.monotonic() > deadline:
                    raise BenchError(
                        f"a generator process failed (exit codes {crashed})"
                        if crashed
                        else "the generator processes did not report in time"
                    ) from None
                continue
            if isinstance(part, str):
                raise BenchError(part)
            parts.append(part)
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()
                child.join()
    return LoadResult.merge(parts)


async def _probe_async(spec: LoadSpec, timeout_s: float) -> str | None:
    submitter = _submitter(spec)
    await submitter.open()
    outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
    try:

        def done(kind: str | None, arrived: float) -> None:
            if not outcome.done():
                outcome.set_result(kind)

        submitter.submit(done)
        try:
            kind = await asyncio.wait_for(outcome, timeout_s)
        except TimeoutError:
            return f"no answer within {timeout_s:g} s"
        if kind is None:
            return None
        return f"{kind}: {submitter.error_samples.get(kind, '')}".rstrip(": ")
    finally:
        await submitter.close()


def probe(spec: LoadSpec, timeout_s: float = 30.0) -> str | None:
    """Send the benchmark request once; None if it succeeded, else why it failed."""
    return asyncio.run(_probe_async(spec, timeout_s))
