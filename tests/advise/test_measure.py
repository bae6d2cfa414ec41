"""The advisor's measurements with a real ONNX Runtime session: a verification that cannot hold its
SLO any more stops there, and the count of late requests it stops at is sure to make the p99 late."""

from __future__ import annotations

from pathlib import Path

import modelfactory as mf
import numpy as np
import pytest

from inferd.advise.measure import UNSERVED_S, Sessions, late_enough, random_feeder
from inferd.advise.search import Config, Layout


@pytest.mark.parametrize("count", [1, 2, 30, 50, 99, 100, 101, 1000, 20_000])
def test_late_enough_late_requests_make_the_p99_late_whatever_the_others(count: int) -> None:
    enough = late_enough(count)
    latencies = np.zeros(count)
    latencies[count - enough :] = 2.0  # late against an SLO of 1, the others at 0
    assert np.percentile(latencies, 99) > 1.0
    assert enough <= 0.01 * count + 2  # about the 1% a p99 allows: a miss is known early


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = mf.write_model(tmp_path_factory.mktemp("measure"), "mlp", mf.matmul_mlp)
    return directory / "1" / "model.onnx"


def test_a_verification_sure_to_miss_its_slo_stops_there(model: Path) -> None:
    config = Config(Layout(1, 1, 1), 4)
    # An SLO no execution meets: once late_enough(50) requests were answered, the p99 is known to
    # miss; the rest of the half second's arrivals are never served and count as unserved.
    sessions = Sessions({1: model}, random_feeder(model), verify_s=0.5, slo_s=1e-9)
    missed = sessions.verify(config, 100.0)
    assert missed.p99_s > 1e-9
    assert missed.p99_s > UNSERVED_S / 2  # most of the run was never served: it stopped early
    # Without an SLO the same run serves every request.
    complete = Sessions({1: model}, random_feeder(model), verify_s=0.5).verify(config, 100.0)
    assert complete.p99_s < UNSERVED_S / 2 and complete.throughput > 0


def test_sessions_are_built_once_per_version_and_threads_and_reused_by_every_layout(model: Path) -> None:
    """The advisor probes every layout, then verifies its contenders: those verifications reuse the
    probes' sessions, and 1 x 1 runs one of 2 x 1's."""
    sessions = Sessions({1: model, 2: model}, random_feeder(model), slo_s=1.0)
    one, two_threads, two_instances = Layout(1, 1, 1), Layout(1, 1, 2), Layout(1, 2, 1)
    for layout in (one, two_threads, two_instances):
        sessions.probe(layout, 2)
    assert sessions.built == 3
    first = sessions.of(one)
    assert first == sessions.of(two_instances)[:1] and len(sessions.of(two_instances)) == 2
    assert sessions.of(two_threads)[0] is not first[0]
    sessions.verify(Config(one, 2), 200.0)
    assert sessions.built == 3 and sessions.of(one)[0] is first[0]
    # Beyond KEEP_POOLS pools the least recently used goes: here (version 1, 2 threads).
    sessions.of(Layout(2, 1, 1))
    sessions.of(Layout(2, 1, 2))
    assert sessions.built == 5
    sessions.of(two_threads)
    assert sessions.built == 6
