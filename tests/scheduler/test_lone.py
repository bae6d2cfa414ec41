"""The lone-request decision (inferd/scheduler/lone.py) from injected measurements: no clock, no threads."""

from __future__ import annotations

from inferd.scheduler.lone import (
    AUTO_MAX_NS,
    AUTO_MIN_NS,
    COMPANY_MAX_NS,
    COMPANY_TURNS,
    HOP_FACTOR,
    INLINE_AUTO,
    LoneDecision,
    Shape,
)

SHAPE: Shape = ((30,), 1)
US = 1000


def _measured(decision: LoneDecision, run_ns: int, shape: Shape = SHAPE) -> LoneDecision:
    for _ in range(3):  # the first run is dropped as a cold one
        decision.record_run(shape, run_ns)
    return decision


def _quiet(decision: LoneDecision, lag_ns: int = 20 * US) -> LoneDecision:
    for _ in range(4):
        decision.record_lag(lag_ns)
    return decision


def test_auto_bound_is_a_few_hops_within_limits() -> None:
    decision = LoneDecision(INLINE_AUTO)
    decision.record_hop(60 * US)
    assert decision.bound_ns() == HOP_FACTOR * 60 * US
    decision.record_hop(1 * US)  # a shorter hop is followed at once
    assert decision.bound_ns() == AUTO_MIN_NS
    slow = LoneDecision(INLINE_AUTO)
    slow.record_hop(10_000 * US)
    assert slow.bound_ns() == AUTO_MAX_NS
    assert LoneDecision(150 * US).bound_ns() == 150 * US  # a fixed bound is the bound


def test_a_lone_request_runs_inline_when_measured_short_idle_long_enough_and_the_loop_quiet() -> None:
    decision = _quiet(_measured(LoneDecision(INLINE_AUTO), 100 * US))
    decision.record_hop(50 * US)  # bound: 8 hops, 400 us
    decision.idle_since_ns = 1_000 * US
    assert decision.inline(SHAPE, 1_100 * US)
    # Idle for less than one run: the model is under load and batches on its worker.
    assert not decision.inline(SHAPE, 1_050 * US)
    # A shape never measured goes to the worker first; a run over the bound stays there.
    assert not decision.inline(((30,), 2), 2_000 * US)
    _measured(decision, 500 * US, ((7,), 1))
    assert not decision.inline(((7,), 1), 2_000 * US)
    assert not LoneDecision(0).inline(SHAPE, 2_000 * US)  # inline execution off


def test_the_hop_estimate_ignores_a_busy_loops_late_results() -> None:
    decision = _quiet(LoneDecision(INLINE_AUTO))
    decision.record_hop(50 * US)
    for _ in range(8):
        decision.record_lag(500 * US)  # the loop is loaded: results come back late
    assert decision.loaded()
    for _ in range(100):
        decision.record_hop(2_000 * US)
    assert decision.hop_ns == 50 * US
    _quiet(decision, 1 * US)
    decision.record_hop(70 * US)  # a quiet loop: a longer hop is followed, slowly
    assert 50 * US < decision.hop_ns < 60 * US


def test_a_loaded_loop_stops_inline_runs_and_makes_lone_requests_wait_for_company() -> None:
    decision = _quiet(_measured(LoneDecision(INLINE_AUTO), 10 * US), 10 * US)
    decision.idle_since_ns = 0
    assert not decision.loaded() and decision.company_wait_ns() == 0
    assert decision.inline(SHAPE, 10_000 * US)
    decision.record_lag(40 * US)  # one slow turn (a preempted thread) is not load
    assert not decision.loaded() and decision.inline(SHAPE, 10_000 * US)
    decision.record_lag(40 * US)  # most of the recent ones: other work keeps the loop busy
    assert decision.loaded()
    assert not decision.inline(SHAPE, 10_000 * US)
    assert decision.company_wait_ns() == COMPANY_TURNS * 40 * US
    decision.record_lag(1_000 * US)
    decision.record_lag(1_000 * US)
    assert decision.company_wait_ns() == COMPANY_MAX_NS
    # A model's own queue delay caps the wait.
    own = _quiet(LoneDecision(INLINE_AUTO, max_queue_delay_ns=300 * US))
    own.record_lag(1_000 * US)
    own.record_lag(1_000 * US)
    assert own.company_wait_ns() == 300 * US
    # Once the loop is quiet again, lone requests run inline again.
    _quiet(decision)
    assert decision.inline(SHAPE, 10_000 * US)


def test_waits_that_gather_nobody_stop_for_a_while() -> None:
    decision = _quiet(LoneDecision(0))
    decision.record_lag(500 * US)
    decision.record_lag(500 * US)
    assert decision.company_wait_ns() > 0
    decision.record_wait(gathered=False)
    decision.record_wait(gathered=True)  # a wait that gathered company resets the count
    decision.record_wait(gathered=False)
    assert decision.company_wait_ns() > 0
    decision.record_wait(gathered=False)  # two in a row: a misjudged loop, stop waiting
    skipped = 0
    while decision.company_wait_ns() == 0:
        skipped += 1
        assert skipped < 1000
    assert skipped == 64


def test_a_shapes_estimate_drops_its_cold_run_and_follows_a_slower_model() -> None:
    decision = LoneDecision(INLINE_AUTO)
    decision.record_run(SHAPE, 5_000 * US)
    decision.record_run(SHAPE, 40 * US)
    assert decision.run_ns(SHAPE) == 40 * US
    for _ in range(20):
        decision.record_run(SHAPE, 400 * US)
    estimate = decision.run_ns(SHAPE)
    assert estimate is not None and estimate > 390 * US
