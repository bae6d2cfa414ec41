"""The requests waiting for one model version, by priority level and by shape group.

Batch forming costs O(batch), not O(queue depth): each level keeps its requests in arrival order, and
each (level, group) pair keeps its own, so the head is the first entry of the best level and the
requests it can merge with are the first entries of its group. A request that leaves the queue early
(deadline, client gone) or that a batch took through the other list is only marked; each list drops
such entries when they reach its front, so every entry is popped at most once from each list.
"""

from __future__ import annotations

import asyncio
from bisect import insort
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np

from inferd.runtimes.request_parameters import ModelParameters
from inferd.scheduler.tracehook import RequestTrace

Outputs = dict[str, np.ndarray]

# Requests of the head's group that do not fit the batch's remaining rows and are passed over when
# forming one batch; past it the batch is sent as it is (bounds the work per batch).
MERGE_LOOKAHEAD = 64


@dataclass(slots=True, eq=False)
class Pending:
    inputs: Outputs
    rows: int
    group: Hashable
    future: asyncio.Future[Outputs]
    enqueued_ns: int
    trace: RequestTrace | None = None
    # Triton's order: 1 before 2 before ...; 0 when the model has no priority levels.
    priority: int = 0
    # perf_counter_ns after which the request is dropped unexecuted; 0: none.
    deadline_ns: int = 0
    expiry: asyncio.TimerHandle | None = None
    # False once it left the queue: taken into a batch, expired, or abandoned by its client.
    queued: bool = True
    # The outputs the client asked for; None: all of them.
    outputs: frozenset[str] | None = None
    # What a model taking parameters gets (its group holds their key, so a batch's are all equal);
    # None: the model takes none, or the request sent none.
    parameters: ModelParameters | None = None


class _Level:
    __slots__ = ("arrivals", "groups")

    def __init__(self) -> None:
        self.arrivals: deque[Pending] = deque()
        self.groups: dict[Hashable, deque[Pending]] = {}


class RequestQueue:
    def __init__(self) -> None:
        self._levels: dict[int, _Level] = {}
        self._priorities: list[int] = []  # levels holding entries, best (lowest number) first
        # Requests still waiting and their rows; entries marked gone are not counted.
        self.count = 0
        self.rows = 0
        # Entries popped or passed over while forming batches: the work batch forming did.
        self.visited = 0

    def __len__(self) -> int:
        return self.count

    def push(self, item: Pending) -> None:
        level = self._levels.get(item.priority)
        if level is None:
            level = self._levels[item.priority] = _Level()
            insort(self._priorities, item.priority)
        level.arrivals.append(item)
        group = level.groups.get(item.group)
        if group is None:
            group = level.groups[item.group] = deque()
        group.append(item)
        self.count += 1
        self.rows += item.rows

    def discard(self, item: Pending) -> bool:
        """Mark a waiting request gone (expired, abandoned) and drop its inputs; False if it had left."""
        if not item.queued:
            return False
        self._leave(item)
        item.inputs = {}
        return True

    def drain(self) -> list[Pending]:
        """Every waiting request, removed from the queue (shutdown only: O(queue))."""
        waiting = [item for level in self._levels.values() for item in level.arrivals if item.queued]
        for item in waiting:
            self._leave(item)
        return waiting

    def head(self) -> Pending | None:
        """The request the next batch starts with: the oldest waiting one of the best level."""
        priorities = self._priorities
        while priorities:
            level = self._levels[priorities[0]]
            arrivals = level.arrivals
            while arrivals and not arrivals[0].queued:
                gone = arrivals.popleft()
                self.visited += 1
                _trim(level, gone.group)
            if arrivals:
                return arrivals[0]
            del self._levels[priorities[0]]
            priorities.pop(0)
        return None

    def take(self, max_rows: int, merge: bool, now_ns: int, expired: list[Pending]) -> list[Pending]:
        """The head plus later requests of its group (this level, then lower ones) up to ``max_rows``.

        Requests found past their deadline leave the queue into ``expired``; the batch is then empty
        when the head itself expired.
        """
        head = self.head()
        if head is None:
            return []
        level = self._levels[head.priority]
        level.arrivals.popleft()
        self._leave(head)
        _trim(level, head.group)  # every older entry of its group on this level is gone: it is in front
        if head.deadline_ns and now_ns >= head.deadline_ns:
            expired.append(head)
            return []
        batch = [head]
        if not merge or not self.count:
            return batch
        rows = head.rows
        for priority in self._priorities[self._priorities.index(head.priority) :]:
            if rows >= max_rows or not self.count:
                break
            level = self._levels[priority]
            group = level.groups.get(head.group)
            if group is not None:
                rows = self._merge(group, batch, rows, max_rows, now_ns, expired)
                if not group:
                    del level.groups[head.group]
        return batch

    def _merge(
        self,
        group: deque[Pending],
        batch: list[Pending],
        rows: int,
        max_rows: int,
        now_ns: int,
        expired: list[Pending],
    ) -> int:
        passed: list[Pending] = []  # waiting requests too big for what is left: they stay in front
        while group and rows < max_rows and len(passed) < MERGE_LOOKAHEAD:
            item = group.popleft()
            self.visited += 1
            if not item.queued:
                continue
            if item.deadline_ns and now_ns >= item.deadline_ns:
                self._leave(item)
                expired.append(item)
            elif rows + item.rows <= max_rows:
                self._leave(item)
                batch.append(item)
                rows += item.rows
            else:
                passed.append(item)
        group.extendleft(reversed(passed))
        return rows

    def _leave(self, item: Pending) -> None:
        item.queued = False
        self.count -= 1
        self.rows -= item.rows
        if not self.count:
            # Nothing waits: drop the marked entries at once, so none keeps its inputs alive.
            self._levels.clear()
            self._priorities.clear()


def _trim(level: _Level, key: Hashable) -> None:
    """Pop the gone entries at the front of one group's list; forget the group once it is empty."""
    group = level.groups.get(key)
    if group is None:
        return
    while group and not group[0].queued:
        group.popleft()
    if not group:
        del level.groups[key]
