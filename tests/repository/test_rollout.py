"""Guard rails and the traffic split of a canary rollout."""

from __future__ import annotations

from inferd.model_config import GuardRails, RolloutConfig
from inferd.repository.rollout import Rollout

MS = 1_000_000


def _rollout(**config: object) -> Rollout:
    return Rollout("1", "2", RolloutConfig.model_validate({"candidate": 2, **config}), "test")


def test_the_split_sends_exactly_the_configured_share() -> None:
    rollout = _rollout(canary_percent=12.5)
    assert sum(rollout.takes_candidate() for _ in range(800)) == 100
    assert not any(_rollout(canary_percent=0).takes_candidate() for _ in range(100))
    assert all(_rollout(canary_percent=100).takes_candidate() for _ in range(100))


def test_no_judgement_before_min_requests() -> None:
    rollout = _rollout(guard={"min_requests": 5})
    for _ in range(4):
        rollout.record_candidate(False, MS)
    assert rollout.evaluate(0.0) is None
    rollout.record_candidate(False, MS)
    decision = rollout.evaluate(0.0)
    assert decision is not None and decision.action == "rollback"
    assert "error rate 1.000 > 0.05 (5/5 requests)" in decision.reason


def test_latencies_under_the_floor_never_breach() -> None:
    rollout = _rollout(guard={"min_requests": 10, "latency_floor_ms": 1.0})
    for _ in range(50):
        rollout.record_stable(True, MS // 20)
        rollout.record_candidate(True, MS // 2)  # 10x slower, but both well under a millisecond
    assert rollout.evaluate(0.0) is None


def test_latency_ratio_breach_rolls_back() -> None:
    rollout = _rollout(guard=GuardRails(min_requests=10, max_latency_ratio=3.0).model_dump())
    for _ in range(50):
        rollout.record_stable(True, 2 * MS)
        rollout.record_candidate(True, 5 * MS)
    assert rollout.evaluate(0.0) is None  # 2.5x is within 3x
    for _ in range(50):
        rollout.record_candidate(True, 20 * MS)
    decision = rollout.evaluate(0.0)
    assert decision is not None and decision.action == "rollback" and "p99" in decision.reason


def test_shadow_disagreement_breach_rolls_back() -> None:
    rollout = _rollout(shadow=True, guard={"min_requests": 4, "max_disagreement_rate": 0.25})
    for agreed in (True, True, True, False):
        rollout.record_candidate(True, MS)
        rollout.record_shadow(agreed)
    assert rollout.evaluate(0.0) is None  # exactly at the limit
    rollout.record_candidate(True, MS)
    rollout.record_shadow(False)
    decision = rollout.evaluate(0.0)
    assert decision is not None and "shadow outputs disagree" in decision.reason


def test_promotion_needs_every_configured_condition() -> None:
    rollout = _rollout(promote_after_requests=30, promote_after_s=60, guard={"min_requests": 10})
    for _ in range(30):
        rollout.record_stable(True, MS)
        rollout.record_candidate(True, MS)
    assert rollout.evaluate(rollout.started + 59) is None
    decision = rollout.evaluate(rollout.started + 61)
    assert decision is not None and decision.action == "promote"
    # Without a promotion rule a rollout runs until someone decides.
    never = _rollout(guard={"min_requests": 1})
    never.record_candidate(True, MS)
    assert never.evaluate(never.started + 1e6) is None
