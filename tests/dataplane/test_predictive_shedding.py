"""Predictive front-end shedding (inferd/dataplane/loop_shedding.py) in a simulated server whose event
loop, not its model, is what limits (tests/frontendsim.py): simulated time, seeded, deterministic."""

from __future__ import annotations

from frontendsim import MS, Costs, FrontEndSimulation

from inferd.dataplane.loop_shedding import MIN_LAG_NS
from inferd.scheduler.adaptive import AdaptiveBatching

TARGET_NS = 20 * MS
# 0.35 ms of loop per answered request (2,857 requests/s), 0.08 ms per refused one; the model runs a
# row in ~0.16 ms on another core, so it is idle most of the time: the loop is what limits.
COSTS = Costs()
CAPACITY_PER_S = COSTS.capacity_per_s


def _simulation(burst: int = 1) -> FrontEndSimulation:
    controller = AdaptiveBatching(TARGET_NS, max_batch_size=64, instances=1)
    return FrontEndSimulation(controller, COSTS, burst=burst)


def test_at_70_percent_with_parsing_lag_what_is_on_time_is_served() -> None:
    # Requests arrive 4 at a time (a loop turn reads several sockets): the loop lags while it parses
    # each burst, past the 2 ms below which it never sheds, yet every request is answered in time.
    simulation = _simulation(burst=4)
    simulation.run(0.5 * CAPACITY_PER_S, 1)
    result = simulation.run(0.7 * CAPACITY_PER_S, 3)
    assert sum(1 for lag in result.lags_ns if lag >= MIN_LAG_NS) > 50
    assert result.p99_ns() <= TARGET_NS
    assert result.shed <= 0.005 * result.offered


def test_above_capacity_it_sheds_what_would_miss_and_answers_the_rest_in_time() -> None:
    for share, goodput in ((1.2, 0.9), (1.5, 0.8)):
        simulation = _simulation()
        simulation.run(0.7 * CAPACITY_PER_S, 1)
        result = simulation.run(share * CAPACITY_PER_S, 3)
        # At least the excess is refused (a refusal costs the loop too), and what was admitted is
        # answered within the target, at most of what the loop can serve.
        assert result.shed >= (1 - 1 / share) * result.offered, share
        assert result.p99_ns() <= TARGET_NS, share
        assert result.within(TARGET_NS) / 3 >= goodput * CAPACITY_PER_S, share


def test_after_overload_it_stops_shedding() -> None:
    simulation = _simulation()
    simulation.run(1.5 * CAPACITY_PER_S, 2)
    simulation.run(0.3 * CAPACITY_PER_S, 1)
    result = simulation.run(0.3 * CAPACITY_PER_S, 2)
    assert result.shed == 0
    assert result.p99_ns() < 5 * MS
