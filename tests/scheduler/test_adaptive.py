"""SLO-aware adaptive batching, driven in simulated time (tests/adaptivesim.py): no delay at
low load, bigger batches as load rises, p99 held up to capacity, shedding above it, recovery after."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from adaptivesim import MS, LinearModel, Phase, Simulation
from heldruntime import StuckRuntime

from inferd.errors import Unavailable
from inferd.scheduler.adaptive import WARM_EXECUTIONS, AdaptiveBatching
from inferd.scheduler.batcher import Batcher
from inferd.scheduler.estimates import ArrivalRate, ExecutionFit
from inferd.scheduler.policy import BatchPolicy
from inferd.scheduler.stats import ModelStats

TARGET_NS = 20 * MS
# 1 ms + 0.25 ms per row: batching pays (a batch of 28 serves 3.5 rows/ms per instance, one row 0.8).
MODEL = LinearModel(fixed_ns=1 * MS, per_row_ns=MS // 4)
INSTANCES = 2
# What two instances serve at the batch cap the target allows (2·t(b) within 90% of 20 ms: b = 28).
CAPACITY_PER_S = MODEL.capacity_per_s(28, INSTANCES)


def _simulation(seed: int = 1) -> Simulation:
    controller = AdaptiveBatching(TARGET_NS, max_batch_size=256, instances=INSTANCES)
    return Simulation(controller, MODEL, INSTANCES, seed)


def test_the_fit_recovers_a_linear_cost_and_extrapolates_one_size_pessimistically() -> None:
    fit = ExecutionFit()
    for rows in list(range(1, 33)) * 2:
        fit.observe(rows, 1_000_000 + 250_000 * rows)
    assert abs(fit.intercept_ns - 1_000_000) < 1_000 and abs(fit.slope_ns - 250_000) < 100
    assert fit.deviation_ns < 1_000

    alone = ExecutionFit()
    for _ in range(10):
        alone.observe(1, 1_250_000)
    # Only lone runs seen: a batch of 8 is predicted to cost 8 of them, never less.
    assert alone.predict(8) == pytest.approx(8 * 1_250_000)


def test_one_paused_execution_nudges_the_plan_instead_of_collapsing_it() -> None:
    controller = AdaptiveBatching(TARGET_NS, max_batch_size=256, instances=1)
    for rows in list(range(1, 33)) * 2:
        controller.executed(rows, MODEL.fixed_ns + MODEL.per_row_ns * rows)
    before = controller.plan.cap
    controller.executed(8, 100 * MS)  # a GC pause or a preempted thread: 30 times the usual
    assert controller.plan.cap >= before // 2
    for _ in range(40):
        controller.executed(8, MODEL.fixed_ns + MODEL.per_row_ns * 8)
    assert controller.plan.cap >= before - 2


def test_the_arrival_rate_follows_the_load_and_forgets_a_silence() -> None:
    rate = ArrivalRate(window_ns=10 * MS)
    for tick in range(1000):  # one row per 0.1 ms: 10 rows/ms
        rate.observe(tick * MS // 10, 1)
    assert abs(rate.per_ns * 1e6 - 10) < 0.5
    rate.observe(100 * MS + 10_000 * MS, 1)  # ten seconds of silence
    assert rate.per_ns * 1e6 < 0.01


def test_a_cold_controller_neither_delays_nor_caps_nor_sheds() -> None:
    controller = AdaptiveBatching(TARGET_NS, max_batch_size=64, instances=1)
    for _ in range(WARM_EXECUTIONS - 1):
        controller.executed(64, 500 * MS)  # far too slow for the target: ignored until warm
    assert controller.plan.delay_ns == 0 and controller.plan.cap == 64
    assert controller.admits(1, queued_rows=10_000, busy=1)
    assert not controller.hopeless(waited_ns=10 * TARGET_NS, queued_rows=10_000, free=1)


def test_a_request_on_an_idle_model_is_never_shed() -> None:
    controller = AdaptiveBatching(TARGET_NS, max_batch_size=64, instances=1)
    for _ in range(WARM_EXECUTIONS):
        controller.executed(1, 50 * MS)  # even one row misses the target: it still runs
    for i in range(10):
        controller.arrived(i * 10 * MS, 1)  # 100 rows/s: five times what the model serves
    assert controller.plan.saturated
    assert controller.admits(1, queued_rows=0, busy=0)
    assert not controller.admits(1, queued_rows=5, busy=1)
    # At dispatch, however long they waited: what the free instances take now runs; a backlog sheds.
    cap = controller.plan.cap
    assert not controller.hopeless(waited_ns=TARGET_NS, queued_rows=cap, free=1)
    assert controller.hopeless(waited_ns=TARGET_NS, queued_rows=cap + 1, free=1)


def test_low_load_adds_no_delay() -> None:
    simulation = _simulation()
    result = simulation.run(Phase(rate_per_s=100, seconds=3))
    assert result.shed == 0
    assert set(result.delays_ns) == {0}
    assert result.mean_batch() < 1.1
    assert result.p99_ns() < 2 * MS  # one execution: nothing waits


def test_rising_load_grows_the_batches_and_holds_the_p99() -> None:
    simulation = _simulation()
    batches = []
    for fraction in (0.1, 0.4, 0.7, 0.85):
        result = simulation.run(Phase(rate_per_s=fraction * CAPACITY_PER_S, seconds=2))
        assert result.shed == 0, fraction
        assert result.p99_ns() <= TARGET_NS, fraction
        batches.append(result.mean_batch())
    assert batches == sorted(batches) and batches[-1] > 4 * batches[0]
    assert simulation.controller.plan.delay_ns > 0  # near capacity it waits to fill batches


def test_one_instance_never_waits_and_batches_form_from_what_queued_meanwhile() -> None:
    controller = AdaptiveBatching(TARGET_NS, max_batch_size=256, instances=1)
    simulation = Simulation(controller, MODEL, instances=1)
    result = simulation.run(Phase(rate_per_s=0.85 * MODEL.capacity_per_s(28, 1), seconds=2))
    assert set(result.delays_ns) == {0} and controller.plan.delay_ns == 0
    assert result.mean_batch() > 4 and result.p99_ns() <= TARGET_NS


def test_overload_sheds_what_would_miss_and_keeps_serving_at_capacity() -> None:
    simulation = _simulation()
    simulation.run(Phase(rate_per_s=0.5 * CAPACITY_PER_S, seconds=1))
    result = simulation.run(Phase(rate_per_s=1.5 * CAPACITY_PER_S, seconds=3))
    assert result.shed > 0.2 * result.offered
    # What it serves it serves within the target, at (nearly) the capacity batching allows.
    assert result.p99_ns() <= TARGET_NS
    assert len(result.latencies_ns) / 3 >= 0.9 * CAPACITY_PER_S
    assert simulation.controller.plan.overloaded


def test_it_recovers_after_overload() -> None:
    simulation = _simulation()
    simulation.run(Phase(rate_per_s=2 * CAPACITY_PER_S, seconds=2))
    simulation.run(Phase(rate_per_s=100, seconds=2))  # the backlog drains, the estimates follow
    result = simulation.run(Phase(rate_per_s=100, seconds=2))
    assert result.shed == 0
    assert set(result.delays_ns) == {0}
    assert result.p99_ns() < 2 * MS
    assert not simulation.controller.plan.overloaded


def test_misses_shrink_the_budget_and_a_met_target_grows_it_back() -> None:
    controller = AdaptiveBatching(TARGET_NS, max_batch_size=64, instances=1)
    for _ in range(WARM_EXECUTIONS):
        controller.executed(8, 2 * MS)
    start = controller.budget
    controller.completed(100 * MS, [0] * 100)  # a window of 100 requests, all late
    shrunk = controller.budget
    assert shrunk < start
    for _ in range(5):
        controller.completed(200 * MS, [200 * MS - MS] * 100)  # all on time
    assert shrunk < controller.budget <= 0.9


def test_misses_with_short_executions_leave_the_budget_and_the_cap_alone() -> None:
    # Executions far below the target (a fast model behind a saturated event loop): the answers are
    # late for reasons a smaller batch cannot fix, and shrinking it would only add executions.
    controller = AdaptiveBatching(TARGET_NS, max_batch_size=64, instances=1)
    for _ in range(WARM_EXECUTIONS):
        controller.executed(8, 400_000)
    start, cap = controller.budget, controller.plan.cap
    for _ in range(5):
        controller.completed(100 * MS, [0] * 100)  # windows of 100 requests, all late
    assert controller.budget == start and controller.plan.cap == cap == 64


def test_a_queue_the_instances_drain_by_themselves_is_never_shed() -> None:
    # A fast model behind a saturated front-end: requests reach the batcher late and in bunches, but
    # the instances are mostly idle. Refusing what was already parsed would cost the front-end nearly
    # what answering costs, so nothing is shed however the queue looks.
    controller = AdaptiveBatching(TARGET_NS, max_batch_size=8, instances=1)
    for _ in range(WARM_EXECUTIONS):
        controller.executed(8, 4 * MS)
    for i in range(200):
        controller.arrived(i * MS, 1)  # 1,000 rows/s: the instance busy half the time
    assert not controller.plan.saturated
    assert controller.admits(1, queued_rows=64, busy=1)
    assert not controller.hopeless(waited_ns=10 * TARGET_NS, queued_rows=64, free=1)


def test_a_configured_delay_is_a_ceiling_over_the_chosen_one() -> None:
    capped = AdaptiveBatching(TARGET_NS, max_batch_size=256, instances=INSTANCES, max_delay_ns=MS // 2)
    simulation = Simulation(capped, MODEL, INSTANCES)
    result = simulation.run(Phase(rate_per_s=0.85 * CAPACITY_PER_S, seconds=2))
    assert max(result.delays_ns) <= MS // 2


def test_the_batcher_sheds_at_admission_what_its_queue_cannot_serve_in_time() -> None:
    # A 10 s target and executions taught to the controller as 0.45 s per row: the wall-clock time
    # this test takes is negligible against them, so what is shed follows from the queue alone.
    async def scenario() -> None:
        runtime = StuckRuntime()
        stats = ModelStats()
        policy = BatchPolicy(max_batch_size=8, dynamic=True, target_p99_ns=10_000 * MS)
        batcher = Batcher(runtime, policy, stats, "m")
        adaptive = batcher.adaptive
        assert adaptive is not None
        for _ in range(WARM_EXECUTIONS):
            adaptive.executed(8, 3_600 * MS)
        # The last 3 s brought 10 rows/s (taught with past times): far more than the model serves.
        start = time.perf_counter_ns() - 3_000 * MS
        for i in range(30):
            adaptive.arrived(start + i * 100 * MS, 1)
        assert adaptive.plan.cap == 8 and adaptive.plan.saturated
        held = asyncio.create_task(batcher.infer({"x": np.array([[-1.0]], np.float32)}, 1))
        assert await asyncio.get_running_loop().run_in_executor(None, runtime.stuck.wait, 5)
        # The busy instance (1.8 s left on average) + two batches of 8 (3.6 s each) + 2 rows (0.9 s)
        # end within 10 s; a 19th queued row would not.
        rows = [{"x": np.array([[float(i)]], np.float32)} for i in range(24)]
        tasks = [asyncio.create_task(batcher.infer(row, 1)) for row in rows]
        await asyncio.sleep(0)
        shed = [task for task in tasks if task.done()]
        assert shed == tasks[18:] and stats.shed == 6
        for task in shed:
            with pytest.raises(Unavailable, match="overloaded: request shed"):
                task.result()
        runtime.release.set()
        assert (await held)["y"][0, 0] == -2.0
        for i, task in enumerate(tasks[:18]):
            assert (await task)["y"][0, 0] == 2.0 * i
        await batcher.close()

    asyncio.run(asyncio.wait_for(scenario(), 20))
