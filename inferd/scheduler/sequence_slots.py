"""Which sequences are live and which slot each holds: starts, ends, the backlog, idle timeouts.

Event-loop thread only. A sequence gets a slot on its start (or waits in the bounded backlog for
one), keeps it while it has steps or has been idle for less than ``max_sequence_idle_microseconds``,
and frees it after its end step ran. Ids that ended or were freed are remembered, with why, so a
late step gets an error that says what happened to its sequence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Callable

from inferd.errors import InvalidRequest
from inferd.scheduler.sequence_plan import SequencePlan
from inferd.scheduler.sequences import Sequence, SequenceId, StepFlags, check_corrid

log = logging.getLogger(__name__)

# Ids of sequences that ended or were freed, remembered (with why) to explain a late step.
_REMEMBERED = 4096
ENDED = "has ended (sequence_end was sent)"


class SequenceSlots:
    def __init__(self, plan: SequencePlan, name: str, on_slot_given: Callable[[], None]) -> None:
        self._plan = plan
        self._name = name
        # Called when a backlogged sequence got a slot: its steps may run now.
        self._on_slot_given = on_slot_given
        self.live: dict[SequenceId, Sequence] = {}
        self._free = list(range(plan.slots - 1, -1, -1))  # popped lowest first
        self._backlog: deque[Sequence] = deque()
        self._gone: OrderedDict[SequenceId, str] = OrderedDict()

    def admit(self, flags: StepFlags) -> Sequence:
        """The live sequence this step belongs to (a new one on sequence_start), or a 400 naming it."""
        sequence = self.live.get(flags.sequence_id)
        if flags.start:
            if sequence is not None:
                still = "is finishing its last step" if sequence.ended else "is still active"
                raise InvalidRequest(
                    f"model '{self._name}': sequence {flags.shown} {still}; a sequence_start for it "
                    "is accepted once it has ended (sequence_end) or been freed"
                )
            check_corrid(self._name, self._plan, flags)
            return self._open(flags)
        if sequence is None or sequence.ended:
            why = ENDED if sequence is not None else self._why_unknown(flags.sequence_id)
            raise InvalidRequest(
                f"model '{self._name}': sequence {flags.shown} {why}; start a sequence with "
                "sequence_start=true on its first request"
            )
        return sequence

    def _why_unknown(self, sequence_id: SequenceId) -> str:
        reason = self._gone.get(sequence_id)
        if reason is not None:
            return reason
        return (
            "is not active (never started with sequence_start, or dropped when this model was "
            "reloaded or replaced)"
        )

    def _open(self, flags: StepFlags) -> Sequence:
        plan = self._plan
        if not self._free and len(self._backlog) >= plan.backlog:
            waiting = f" and {len(self._backlog)} wait for one (max_sequence_backlog)" if plan.backlog else ""
            limit = "max_candidate_sequences" if plan.strategy == "oldest" else "max_batch_size x instances"
            raise InvalidRequest(
                f"model '{self._name}': cannot start sequence {flags.shown}: all {plan.slots} sequence "
                f"slots ({limit}) are taken{waiting}; retry once a sequence ends or idles out"
            )
        sequence = Sequence(flags.sequence_id, {s.input_name: s.initial.copy() for s in plan.states})
        self._gone.pop(flags.sequence_id, None)
        self.live[flags.sequence_id] = sequence
        if self._free:
            sequence.slot = self._free.pop()
        else:
            self._backlog.append(sequence)
        return sequence

    def touched(self, sequence: Sequence) -> None:
        """A step arrived: the sequence is no longer idle."""
        if sequence.idle_timer is not None:
            sequence.idle_timer.cancel()
            sequence.idle_timer = None

    def settle(self, sequence: Sequence, loop: asyncio.AbstractEventLoop) -> None:
        """After a step finished or was withdrawn: end the sequence, or start its idle clock."""
        if sequence.running or sequence.steps:
            return
        if sequence.ended:
            self.release(sequence, ENDED)
        elif sequence.idle_timer is None and self.live.get(sequence.id) is sequence:
            sequence.idle_timer = loop.call_later(self._plan.idle_ns / 1e9, self._idle_out, sequence)

    def _idle_out(self, sequence: Sequence) -> None:
        sequence.idle_timer = None
        if sequence.running or sequence.steps:
            return
        log.info("model %s: sequence %r freed after max_sequence_idle_microseconds", self._name, sequence.id)
        idle_us = self._plan.idle_ns // 1000
        self.release(
            sequence, f"was freed after {idle_us} us without a request (max_sequence_idle_microseconds)"
        )

    def release(self, sequence: Sequence, reason: str) -> None:
        """Free a sequence's slot (handing it to the oldest backlogged sequence) and forget it."""
        if self.live.get(sequence.id) is not sequence:
            return
        del self.live[sequence.id]
        self.touched(sequence)
        self._gone[sequence.id] = reason
        if len(self._gone) > _REMEMBERED:
            self._gone.popitem(last=False)
        if sequence.slot is None:
            with contextlib.suppress(ValueError):
                self._backlog.remove(sequence)
            return
        if self._backlog:
            self._backlog.popleft().slot = sequence.slot
            self._on_slot_given()
        else:
            self._free.append(sequence.slot)
            self._free.sort(reverse=True)
