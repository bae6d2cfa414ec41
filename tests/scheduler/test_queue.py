"""The request queue on its own: order, priorities, merging rules, lazy removal, and work per batch."""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

from inferd.scheduler.queue import MERGE_LOOKAHEAD, Pending, RequestQueue


def _item(
    loop: asyncio.AbstractEventLoop,
    tag: int,
    rows: int = 1,
    group: Hashable = (),
    priority: int = 0,
    deadline_ns: int = 0,
) -> Pending:
    return Pending({}, rows, group, loop.create_future(), tag, None, priority, deadline_ns)


def _tags(batch: list[Pending]) -> list[int]:
    return [item.enqueued_ns for item in batch]


def _with_loop(test: object) -> None:
    loop = asyncio.new_event_loop()
    try:
        test(loop)  # type: ignore[operator]
    finally:
        loop.close()


def test_fifo_within_a_level_and_best_level_first() -> None:
    def scenario(loop: asyncio.AbstractEventLoop) -> None:
        queue = RequestQueue()
        for tag, priority in [(1, 3), (2, 1), (3, 2), (4, 1), (5, 3)]:
            queue.push(_item(loop, tag, priority=priority))
        order = []
        while queue.count:
            order += _tags(queue.take(8, False, 0, []))
        assert order == [2, 4, 3, 1, 5]

    _with_loop(scenario)


def test_a_batch_merges_its_group_across_levels_skipping_what_does_not_fit() -> None:
    def scenario(loop: asyncio.AbstractEventLoop) -> None:
        queue = RequestQueue()
        queue.push(_item(loop, 1, rows=2, group="a", priority=1))
        queue.push(_item(loop, 2, rows=1, group="b", priority=1))
        queue.push(_item(loop, 3, rows=4, group="a", priority=1))  # 2 + 4 > 5: passed over, stays
        queue.push(_item(loop, 4, rows=2, group="a", priority=2))
        queue.push(_item(loop, 5, rows=1, group="a", priority=2))  # 2 + 2 + 1 = 5: full
        queue.push(_item(loop, 6, rows=1, group="a", priority=2))
        assert _tags(queue.take(5, True, 0, [])) == [1, 4, 5]
        assert (queue.count, queue.rows) == (3, 6)
        assert _tags(queue.take(5, True, 0, [])) == [2]
        assert _tags(queue.take(5, True, 0, [])) == [3, 6]
        assert queue.count == 0 and queue.head() is None

    _with_loop(scenario)


def test_discarded_and_expired_requests_leave_without_running() -> None:
    def scenario(loop: asyncio.AbstractEventLoop) -> None:
        queue = RequestQueue()
        items = [_item(loop, tag, deadline_ns=50 if tag == 3 else 0) for tag in range(5)]
        for item in items:
            queue.push(item)
        assert queue.discard(items[0]) and queue.discard(items[1])
        assert not queue.discard(items[1])
        assert queue.count == 3
        expired: list[Pending] = []
        assert _tags(queue.take(8, True, 100, expired)) == [2, 4]
        assert _tags(expired) == [3]
        assert queue.count == 0

    _with_loop(scenario)


def test_forming_a_batch_costs_the_batch_not_the_queue_depth() -> None:
    def scenario(loop: asyncio.AbstractEventLoop) -> None:
        queue = RequestQueue()
        depth = 32_768
        # Two shape groups interleaved, and a priority level: the old queue copied all of it per batch.
        for tag in range(depth):
            queue.push(_item(loop, tag, group=tag % 2, priority=1 + tag % 3))
        batches = 0
        while queue.count:
            before = queue.visited
            batch = queue.take(8, True, 0, [])
            assert len(batch) == 8 or queue.count == 0
            # Every entry is popped at most once from each of its two lists, so the work per batch is
            # bounded by the batch (and the entries it takes from the other list), never by the depth.
            assert queue.visited - before <= 3 * len(batch) + MERGE_LOOKAHEAD
            batches += 1
        assert queue.visited <= 2 * depth
        assert batches == depth // 8

    _with_loop(scenario)


def test_cancelled_requests_in_the_middle_are_dropped_once() -> None:
    def scenario(loop: asyncio.AbstractEventLoop) -> None:
        queue = RequestQueue()
        items = [_item(loop, tag) for tag in range(10_000)]
        for item in items:
            queue.push(item)
        for item in items[1:-1]:
            queue.discard(item)
        assert _tags(queue.take(8, True, 0, [])) == [0, 9_999]
        assert queue.visited <= 2 * len(items)

    _with_loop(scenario)
