"""The continuous-batching scheduler of one loaded generative model version.

One engine thread runs iterations. Each iteration (1) admits waiting sequences while the KV budget
allows (``max_num_seqs`` sequences, ``max_tokens_in_flight`` tokens reserved: prompt + the most it may
generate), (2) prefills waiting prompts, at most ``prefill_chunk`` tokens per iteration (new prompts
that fit together in one execution), so a long prompt delays running streams by one chunk, not by the
whole prompt, and hands their first tokens over at once, then (3) advances every decoding sequence one
token in ONE batched execution. Finished and cancelled sequences leave at the next iteration and give
their reservation back. Events reach each caller's event loop in one hop per phase.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque

import numpy as np

from inferd.errors import ExecutionError, InferdError, RateLimited, Unavailable
from inferd.generative.backend import Batch, Decoder
from inferd.generative.contract import SamplingParams, TokenEvent
from inferd.generative.files import ModelFiles
from inferd.generative.sampling import sample
from inferd.generative.sequence import Item, Sequence, TokenStream
from inferd.generative.stats import GenerationStats
from inferd.model_config import GenerativeOptions

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self, name: str, decoder: Decoder, files: ModelFiles, options: GenerativeOptions, context: int
    ) -> None:
        self.name = name
        self.options = options
        self.context_length = context
        self.stats = GenerationStats()
        self._decoder = decoder
        self._files = files
        self._cond = threading.Condition()
        # Shared with the event loop, under _cond.
        self._waiting: deque[Sequence] = deque()
        self._accepting = True
        self._closed = False
        # The engine thread's own.
        self._prefilling: deque[Sequence] = deque()
        self._batch: Batch = self._new_batch()
        self._decoding: dict[int, Sequence] = {}
        self._reserved = 0
        # Written by the engine thread after each iteration, read by scrapes from the event loop.
        self._kv_bytes = 0
        self._thread = threading.Thread(target=self._run, name=f"inferd-generate-{name}", daemon=True)
        self._thread.start()

    def _new_batch(self) -> Batch:
        return self._decoder.new_batch(self.options.max_num_seqs, self.context_length)

    # -- gauges (read from any thread; approximate while a step runs) --

    @property
    def active(self) -> int:
        return len(self._prefilling) + len(self._decoding)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def kv_bytes(self) -> int:
        return self._kv_bytes

    @property
    def reserved_tokens(self) -> int:
        return self._reserved

    # -- the event loop's side --

    def submit(self, prompt: list[int], params: SamplingParams, max_new: int, request_id: str) -> TokenStream:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + self.options.queue_timeout_s
        seq = Sequence(
            request_id,
            prompt,
            params,
            max_new,
            self._files.tokenizer,
            self._files.eos_token_ids,
            loop,
            deadline,
        )
        with self._cond:
            if not self._accepting:
                self.stats.refused += 1
                raise Unavailable(f"model '{self.name}' is shutting down: it accepts no new generation")
            if len(self._waiting) >= self.options.max_waiting:
                self.stats.refused += 1
                raise RateLimited(
                    f"model '{self.name}' has {len(self._waiting)} generations waiting for KV memory "
                    "(max_waiting): retry later",
                    retry_after_s=1,
                )
            self._waiting.append(seq)
            self._cond.notify()
        return TokenStream(seq, self._cancel)

    def _cancel(self, seq: Sequence) -> None:
        seq.cancelled = True
        with self._cond:
            self._cond.notify()

    def stop_accepting(self) -> None:
        """Drain: refuse new sequences; the running and waiting ones finish."""
        with self._cond:
            self._accepting = False

    async def idle(self) -> None:
        """Return once no sequence is waiting or running (used to drain)."""
        while self.active or self.waiting:
            await asyncio.sleep(0.01)

    def close(self) -> None:
        with self._cond:
            self._accepting = False
            self._closed = True
            self._cond.notify()
        self._thread.join()

    # -- the engine thread --

    def _run(self) -> None:
        while True:
            out: list[tuple[Sequence, Item]] = []
            with self._cond:
                while not self._closed and not (self._waiting or self._prefilling or self._decoding):
                    self._cond.wait()
                if self._closed:
                    break
                self._admit(out)
            try:
                self._iterate(out)
            except Exception as exc:  # a failed execution fails its sequences, not the engine
                log.exception("model %s: generation step failed", self.name)
                self._fail_all(ExecutionError(f"model '{self.name}': generation failed: {exc}"), out)
            self._kv_bytes = self._batch.nbytes + sum(
                sum(array.nbytes for array in seq.cache) for seq in self._prefilling if seq.cache
            )
            _deliver(out, self.stats)
        out = []
        self._fail_all(Unavailable(f"model '{self.name}' was unloaded during the generation"), out)
        with self._cond:
            for seq in self._waiting:
                out.append((seq, Unavailable(f"model '{self.name}' was unloaded")))
            self._waiting.clear()
        _deliver(out, self.stats)

    def _admit(self, out: list[tuple[Sequence, Item]]) -> None:
        """Under _cond: move waiting sequences in, in arrival order, while the budget allows."""
        now = time.monotonic()
        options = self.options
        kept: deque[Sequence] = deque()
        for seq in self._waiting:
            if seq.cancelled:
                continue
            fits = (
                not kept
                and self.active < options.max_num_seqs
                and self._reserved + seq.reserved <= options.max_tokens_in_flight
            )
            if fits:
                self._reserved += seq.reserved
                self._prefilling.append(seq)
            elif now >= seq.deadline:
                self.stats.refused += 1
                out.append((seq, Unavailable(
                    f"model '{self.name}': no KV memory freed up within queue_timeout_s "
                    f"({options.queue_timeout_s} s): the server is at capacity"
                )))  # fmt: skip
            else:
                kept.append(seq)
        self._waiting = kept

    def _iterate(self, out: list[tuple[Sequence, Item]]) -> None:
        for seq in [s for s in self._prefilling if s.cancelled]:
            self._prefilling.remove(seq)
            self._release(seq, "cancelled")
        cancelled = [i for i, seq_id in enumerate(self._batch.rows) if self._decoding[seq_id].cancelled]
        if cancelled:
            self._leave(set(cancelled), "cancelled")
        # Prefill first and hand the first tokens over at once: a new stream's first token waits for
        # its own prefill, not for a decode step of the whole batch too.
        if self._prefilling:
            self._prefill(out)
            _deliver(out, self.stats)
            out.clear()
        if self._decoding:
            self._decode(out)

    def _decode(self, out: list[tuple[Sequence, Item]]) -> None:
        seqs = [self._decoding[seq_id] for seq_id in self._batch.rows]
        logits = self._batch.decode([seq.next_token for seq in seqs])
        self.stats.steps += 1
        finished: set[int] = set()
        for row, seq in enumerate(seqs):
            event = seq.accept(sample(logits[row], seq.params, seq.rng))
            out.append((seq, event))
            if event.finish_reason is not None:
                finished.add(row)
        if finished:
            self._leave(finished, None)

    def _prefill(self, out: list[tuple[Sequence, Item]]) -> None:
        budget = self._prefill_together(out, self.options.prefill_chunk)
        while self._prefilling and budget > 0:
            seq = self._prefilling[0]
            chunk = seq.prompt[seq.prefilled : seq.prefilled + budget]
            logits, seq.cache = self._decoder.prefill_chunk(seq.cache, chunk, seq.prefilled)
            seq.prefilled += len(chunk)
            budget -= len(chunk)
            if seq.prefilled < len(seq.prompt):
                continue
            self._prefilling.popleft()
            self._finish_prefill(seq, logits, out)

    def _prefill_together(self, out: list[tuple[Sequence, Item]], budget: int) -> int:
        """Prefill the new prompts at the head of the queue that fit the budget whole in ONE execution;
        returns the budget left. Padding is computed too, so the budget counts rows x the longest."""
        group: list[Sequence] = []
        width = 0
        for seq in self._prefilling:
            if seq.prefilled or (len(group) + 1) * max(width, len(seq.prompt)) > budget:
                break
            group.append(seq)
            width = max(width, len(seq.prompt))
        if len(group) < 2:
            return budget
        logits, caches = self._decoder.prefill_many([seq.prompt for seq in group])
        for row, seq in enumerate(group):
            self._prefilling.popleft()
            seq.prefilled = len(seq.prompt)
            seq.cache = caches[row]
            self._finish_prefill(seq, logits[row], out)
        return budget - len(group) * width

    def _finish_prefill(self, seq: Sequence, logits: np.ndarray, out: list[tuple[Sequence, Item]]) -> None:
        """A prompt is in the cache: sample its first token, then decode with the batch."""
        self.stats.prompt_tokens += len(seq.prompt)
        event = seq.accept(sample(logits, seq.params, seq.rng))
        out.append((seq, event))
        if event.finish_reason is not None:
            self._release(seq, event.finish_reason)
        elif seq.cache is not None:
            self._batch.join(seq.id, seq.cache, len(seq.prompt))
            self._decoding[seq.id] = seq
        seq.cache = None

    def _leave(self, rows: set[int], reason: str | None) -> None:
        batch = self._batch
        for row in rows:
            seq = self._decoding.pop(batch.rows[row])
            self._release(seq, reason)
        batch.keep([row for row in range(len(batch.rows)) if row not in rows])

    def _release(self, seq: Sequence, reason: str | None) -> None:
        seq.cache = None
        self._reserved -= seq.reserved
        self.stats.generated_tokens += seq.generated
        key = reason or seq.finish_reason or "stop"
        self.stats.finished[key] = self.stats.finished.get(key, 0) + 1
        with self._cond:
            self._cond.notify()  # room for a waiting sequence

    def _fail_all(self, error: InferdError, out: list[tuple[Sequence, Item]]) -> None:
        for seq in [*self._prefilling, *self._decoding.values()]:
            out.append((seq, error))
            self._release(seq, "error")
        self._prefilling.clear()
        self._decoding.clear()
        self._batch = self._new_batch()


def _deliver(out: list[tuple[Sequence, Item]], stats: GenerationStats) -> None:
    """Hand this iteration's events to their event loops, one call per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sequence, Item]]] = {}
    for seq, item in out:
        by_loop.setdefault(seq.loop, []).append((seq, item))
    for loop, items in by_loop.items():
        # A closed loop (RuntimeError) has nobody listening.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_dispatch, items, stats)


def _dispatch(items: list[tuple[Sequence, Item]], stats: GenerationStats) -> None:
    now = time.perf_counter_ns()
    for seq, item in items:
        if isinstance(item, TokenEvent):
            if seq.last_event_ns == 0:
                stats.time_to_first_token.observe(now - seq.created)
            else:
                stats.inter_token.observe(now - seq.last_event_ns)
            seq.last_event_ns = now
        seq.queue.put_nowait(item)
