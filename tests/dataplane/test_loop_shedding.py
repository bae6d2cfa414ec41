"""Front-end shedding (inferd/dataplane/loop_shedding.py): the sampler and the predictive decision in
simulated time with an injected clock and loop, then on a real event loop kept busy, through the data
plane. tests/dataplane/test_predictive_shedding.py drives it in a simulated server."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from inferd.dataplane.dataplane import DataPlane
from inferd.dataplane.loop_shedding import (
    ANSWERS_WARM,
    IDLE_TICKS,
    MIN_LAG_NS,
    SAMPLE_INTERVAL_NS,
    SAMPLES,
    LoopLag,
    LoopShedding,
)
from inferd.errors import Unavailable
from inferd.http.app import RestApp
from inferd.metrics.models import ModelMetrics
from inferd.model_config import ModelConfig
from inferd.repository.manager import ModelRepository
from inferd.runtimes.base import Signature
from inferd.scheduler.adaptive import WARM_EXECUTIONS, AdaptiveBatching
from inferd.types import TensorSpec

MS = 1_000_000
TARGET_NS = 20 * MS


class SimulatedLoop:
    """What LoopLag asks of a loop, in simulated time: callbacks run when the test says."""

    def __init__(self) -> None:
        self.timers: list[Callable[[], None]] = []
        self.ready: list[tuple[Callable[[int], None], int]] = []

    def call_later(self, delay_s: float, callback: Callable[[], None]) -> None:
        assert delay_s == SAMPLE_INTERVAL_NS / 1e9
        self.timers.append(callback)

    def call_soon(self, callback: Callable[[int], None], queued_ns: int) -> None:
        self.ready.append((callback, queued_ns))


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


class Sampled:
    """A LoopShedding whose loop turns are simulated: ``turn(lag)`` runs one sample that waited ``lag``."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.loop = SimulatedLoop()
        self.lag = LoopLag(self.clock, lambda: cast(asyncio.AbstractEventLoop, self.loop))
        self.shedding = LoopShedding(self.lag, self.clock)

    def turn(self, lag_ns: int) -> None:
        self.clock.ns += SAMPLE_INTERVAL_NS
        self.loop.timers.pop(0)()  # the timer queues the probe behind the loop's work...
        probe, queued = self.loop.ready.pop(0)
        self.clock.ns += lag_ns  # ... which takes this long
        probe(queued)

    def refuses(self, controller: AdaptiveBatching, backlog: tuple[int, int] = (0, 0)) -> bool:
        return self.shedding.refusal("m", controller, backlog) is not None

    def teach(self, per_request_ns: int, depth: int = 8, rounds: int = ANSWERS_WARM) -> None:
        """Answers that drained at ``per_request_ns`` each: with k requests in the server ahead of
        it, one took (k + 1)·per_request_ns."""
        for _ in range(rounds):
            tickets = [self.shedding.enter() for _ in range(depth)]
            for ticket in tickets:
                self.clock.ns += per_request_ns
                self.shedding.leave(ticket, True)


def _controller(execution_ns: int = 0) -> AdaptiveBatching:
    controller = AdaptiveBatching(TARGET_NS, max_batch_size=8, instances=1)
    for _ in range(WARM_EXECUTIONS + 1 if execution_ns else 0):
        controller.executed(1, execution_ns)
    return controller


def _taught() -> tuple[Sampled, AdaptiveBatching]:
    """A sampler started by a first request (admitted) for a model running 2 ms a row, whose line of
    time in the server learned a drain of 0.5 ms per request."""
    sampled = Sampled()
    controller = _controller(2 * MS)
    assert not sampled.refuses(controller)  # starts the sampler
    sampled.teach(MS // 2)
    return sampled, controller


def test_a_quiet_loop_with_stalls_never_sheds() -> None:
    sampled = Sampled()
    controller = _controller(2 * MS)
    assert not sampled.refuses(controller)  # the first request starts the sampler
    refused = 0
    for turn in range(2000):
        # Light load: probes wait tens of microseconds; now and then one stall (GC, a scrape, a
        # model load on the loop), sometimes two in a row, each far past the target.
        stalled = turn % 100 in (0, 50, 51)
        sampled.turn(80 * MS if stalled else 30_000)
        refused += sampled.refuses(controller)
    assert refused == 0


def test_a_lagging_loop_with_a_short_queue_ahead_admits_what_will_be_on_time() -> None:
    # The loop lags 5 ms a turn (its own parsing), which the old rule read as 4 turns of 5 ms plus
    # the execution, past 20 ms: it refused. The server drains its requests in 0.5 ms each, and few
    # are in it: answered within ~6 ms, so nothing is shed.
    sampled, controller = _taught()
    for _ in range(SAMPLES):
        sampled.turn(5 * MS)
    assert sampled.shedding.lag.window.lag_ns == 5 * MS
    for depth in range(8):
        tickets = [sampled.shedding.enter() for _ in range(depth)]
        assert not sampled.refuses(controller), depth
        for ticket in tickets:
            sampled.shedding.leave(ticket, True)


def test_a_queue_that_would_answer_late_sheds_and_stops_once_drained() -> None:
    sampled, controller = _taught()
    for _ in range(SAMPLES):
        sampled.turn(3 * MS)
    # 3 ms already waited, then 0.5 ms for each request in the server, itself included: 0.9·20 ms
    # holds 29 of them; with 40 ahead it would be answered ~23.5 ms from its arrival.
    tickets = [sampled.shedding.enter() for _ in range(40)]
    error = sampled.shedding.refusal("m", controller)
    assert isinstance(error, Unavailable)
    assert "predicted to be answered in" in error.message and "40 requests in the server" in error.message
    for ticket in tickets[:20]:
        sampled.shedding.leave(ticket, False)  # shed or failed: they teach the line nothing
    assert not sampled.refuses(controller)
    tickets += [sampled.shedding.enter() for _ in range(20)]
    assert sampled.refuses(controller)
    # The same queue on a loop that stopped lagging: not the front-end's to shed.
    for _ in range(SAMPLES // 2 + 1):
        sampled.turn(50_000)
    assert not sampled.refuses(controller)


def test_a_few_stalled_answers_do_not_refuse_a_request_with_nothing_ahead() -> None:
    sampled, controller = _taught()
    for _ in range(SAMPLES):
        sampled.turn(3 * MS)
    # The process was descheduled for 100 ms with 60 requests in it: the last 5 to start are
    # answered late (the others were cancelled). The line's deviation jumps.
    tickets = [sampled.shedding.enter() for _ in range(60)]
    sampled.clock.ns += 100 * MS
    for ticket in tickets[:55]:
        sampled.shedding.leave(ticket, False)
    for ticket in tickets[55:]:
        sampled.shedding.leave(ticket, True)
    assert sampled.shedding.line.deviation_ns > 10 * MS
    # Alone in the server, a request waits ~3 ms and runs ~0.5 ms: the margin is at most that much.
    assert not sampled.refuses(controller)
    tickets = [sampled.shedding.enter() for _ in range(20)]
    assert sampled.refuses(controller)  # 20 ahead: 3 + 2·10.5 ms with the margin, past 18 ms


def test_a_request_already_counted_in_the_server_is_not_counted_twice() -> None:
    # Over gRPC the check runs once the call's serving began (it is one of the requests in the
    # server); over REST before. Both predict the same for the same requests ahead.
    sampled, controller = _taught()
    shedding = sampled.shedding
    ahead = [shedding.enter() for _ in range(10)]
    rest = shedding.predicted_ns(controller, (0, 0))
    ahead.append(shedding.enter())
    assert shedding.predicted_ns(controller, (0, 0), counted=True) == rest
    assert shedding.predicted_ns(controller, (0, 0)) > rest


def test_the_batchers_completion_counts_once_the_controller_measured_it() -> None:
    sampled = Sampled()
    cold, warm = _controller(), _controller(4 * MS)
    sampled.refuses(cold)
    for _ in range(SAMPLES):
        sampled.turn(9 * MS)
    # 9 ms waited; then, at the warm model's batcher, a running execution and a batch of 2 rows
    # ahead (4 ms per row, one row's cost proportional): past 18 ms. The cold one is not judged.
    backlog = (2, 1)
    assert warm.completion_ns(1, *backlog) > 9 * MS
    assert not sampled.refuses(cold, backlog)
    assert sampled.refuses(warm, backlog)
    assert not sampled.refuses(warm)  # nothing ahead of it at the batcher


def test_a_model_slower_than_its_target_is_left_to_the_batcher() -> None:
    sampled = Sampled()
    slow = _controller(50 * MS)  # one row takes 2.5 times the target
    sampled.refuses(slow)
    for lag_ms in (2, 3, 6):
        for _ in range(SAMPLES):
            sampled.turn(int(lag_ms * MS))
        # Its execution counts for half the target at most: the loop must make up the rest.
        assert not sampled.refuses(slow, (4, 1)), lag_ms
    for _ in range(SAMPLES):
        sampled.turn(9 * MS)
    assert sampled.refuses(slow, (4, 1))


def test_the_sampler_stops_when_no_request_asks_and_forgets_the_lag() -> None:
    sampled = Sampled()
    controller = _controller()
    sampled.refuses(controller)
    for _ in range(SAMPLES):
        sampled.turn(20 * MS)  # past 0.9 of the target on its own
    assert sampled.refuses(controller)
    for _ in range(IDLE_TICKS):  # no request for a model with a target meanwhile
        sampled.turn(20 * MS)
    sampled.clock.ns += SAMPLE_INTERVAL_NS
    sampled.loop.timers.pop(0)()  # the last tick arms nothing
    assert not sampled.lag.running and not sampled.loop.timers and not sampled.loop.ready
    # The next request finds no lag on record and restarts the sampler.
    assert not sampled.refuses(controller)
    assert sampled.lag.running and len(sampled.loop.timers) == 1


class AddOne:
    def __init__(self, path: Path, config: ModelConfig) -> None:
        self.signature = Signature((TensorSpec("x", "FP32", (4,)),), (TensorSpec("y", "FP32", (4,)),), 8)
        self.instances = 1

    def run(self, instance: int, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": inputs["x"] + 1}

    def close(self) -> None:
        pass


def _busy_loop(busy: list[bool], turn_s: float) -> None:
    """Keep one callback on the loop's ready queue that blocks it ``turn_s`` each turn."""

    def work() -> None:
        if busy[0]:
            time.sleep(turn_s)
            asyncio.get_running_loop().call_soon(work)

    asyncio.get_running_loop().call_soon(work)


def test_a_busy_event_loop_sheds_before_decoding_and_counts_it(tmp_path: Path) -> None:
    for name, config in (("adaptive", "dynamic_batching: {target_p99_ms: 20}\n"), ("fixed", "")):
        (tmp_path / name / "1").mkdir(parents=True)
        (tmp_path / name / "1" / "model.onnx").write_text("")
        (tmp_path / name / "config.yaml").write_text(config)

    async def wait_until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline
            await asyncio.sleep(0.002)

    def refused(dataplane: DataPlane, model: str) -> bool:
        try:
            dataplane.check_servable(model, None)
        except Unavailable as exc:
            assert "shed before decoding" in exc.message
            return True
        return False

    async def rest_status(dataplane: DataPlane) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            raise AssertionError("the body was read")

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v2/models/adaptive/infer", "headers": []}
        await RestApp(dataplane, 1 << 20)(scope, receive, send)
        return int(sent[0]["status"])

    async def scenario() -> None:
        repository = ModelRepository(tmp_path, cast(Any, AddOne))
        await repository.load_initial(None, exit_on_error=True)
        dataplane = DataPlane(repository)
        assert not refused(dataplane, "adaptive")  # starts sampling the loop
        busy = [True]
        _busy_loop(busy, 0.025)  # every probe waits behind 25 ms of work: past the 20 ms target
        await wait_until(lambda: refused(dataplane, "adaptive"))
        assert not refused(dataplane, "fixed")  # no target: never shed here
        assert await rest_status(dataplane) == 503  # over REST: refused before its body is read
        busy[0] = False
        await wait_until(lambda: not refused(dataplane, "adaptive"))
        stats = repository.get("adaptive").stats
        assert stats.shed_frontend >= 1 and stats.shed == 0
        assert stats.failures == {"unavailable": stats.shed_frontend}
        text = ModelMetrics(repository, None).render()
        labels = 'model="adaptive",version="1"'
        assert (
            f'inferd_requests_shed_total{{{labels},reason="frontend"}} {float(stats.shed_frontend)!r}' in text
        )
        assert f'inferd_requests_shed_total{{{labels},reason="batcher"}} 0.0' in text
        await repository.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("lag_ms", [0, 1])
def test_a_loop_lag_within_the_target_admits(lag_ms: int) -> None:
    sampled = Sampled()
    controller = _controller(2 * MS)
    sampled.refuses(controller)
    for _ in range(SAMPLES):
        sampled.turn(lag_ms * MS)
    assert not sampled.refuses(controller)


def test_a_loop_turning_within_the_floor_never_sheds_even_for_a_tiny_target() -> None:
    sampled = Sampled()
    tiny = AdaptiveBatching(2 * MS, max_batch_size=8, instances=1)  # 2 ms: 4 turns of 0.5 ms miss it
    sampled.refuses(tiny)
    for _ in range(SAMPLES):
        sampled.turn(MIN_LAG_NS - 1)  # a loaded machine preempting the process for a timeslice
    assert not sampled.refuses(tiny)
    for _ in range(SAMPLES):
        sampled.turn(MIN_LAG_NS)
    assert sampled.refuses(tiny)
