"""One request's sequence: its state in the engine thread, and the stream its caller iterates."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable

import numpy as np
from tokenizers import Tokenizer

from inferd.errors import InferdError
from inferd.generative.contract import FinishReason, SamplingParams, TokenEvent
from inferd.generative.text import Detokenizer, StopMatcher

_ids = itertools.count()

Item = TokenEvent | InferdError


class Sequence:
    """Fields written by the engine thread, except ``cancelled`` (the event loop sets it)."""

    def __init__(
        self,
        request_id: str,
        prompt: list[int],
        params: SamplingParams,
        max_new_tokens: int,
        tokenizer: Tokenizer,
        eos: frozenset[int],
        loop: asyncio.AbstractEventLoop,
        deadline: float,
    ) -> None:
        self.id = next(_ids)
        self.request_id = request_id
        self.prompt = prompt
        self.params = params
        self.max_new_tokens = max_new_tokens
        # Tokens of KV memory reserved at admission: the most this sequence can ever hold.
        self.reserved = len(prompt) + max_new_tokens
        self.rng = np.random.default_rng(params.seed)
        self.eos = eos
        self.loop = loop
        self.deadline = deadline  # monotonic: refused if still waiting then
        self.queue: asyncio.Queue[Item] = asyncio.Queue()
        self.created = time.perf_counter_ns()
        self.last_event_ns = 0
        self.cancelled = False
        self.prefilled = 0
        self.cache: list[np.ndarray] | None = None
        self.next_token = -1
        self.generated = 0
        self.finish_reason: FinishReason | None = None
        self._detokenizer = Detokenizer(tokenizer)
        self._stops = StopMatcher(params.stop)

    def accept(self, token: int) -> TokenEvent:
        """Account for a sampled token: the event to stream, final when the sequence ends here."""
        self.generated += 1
        self.next_token = token
        finish: FinishReason | None = None
        if token in self.eos:
            text, finish = self._stops.flush(), "stop"
        else:
            text, stopped = self._stops.push(self._detokenizer.push(token))
            if stopped:
                finish = "stop"
            elif self.generated >= self.max_new_tokens:
                text, finish = text + self._stops.flush(), "length"
        self.finish_reason = finish
        return TokenEvent(text, (token,), finish, len(self.prompt), self.generated)


class TokenStream:
    """The async iterator ``generate`` returns. Closing it, or dropping it, cancels the sequence."""

    def __init__(self, seq: Sequence, cancel: Callable[[Sequence], None]) -> None:
        self._seq = seq
        self._cancel = cancel
        self._done = False

    def __aiter__(self) -> TokenStream:
        return self

    async def __anext__(self) -> TokenEvent:
        if self._done:
            raise StopAsyncIteration
        try:
            item = await self._seq.queue.get()
        except BaseException:
            self._close()  # the caller was cancelled (a client went away): free the sequence
            raise
        if isinstance(item, InferdError):
            self._done = True
            raise item
        if item.finish_reason is not None:
            self._done = True
        return item

    async def aclose(self) -> None:
        self._close()

    def __del__(self) -> None:
        self._close()

    def _close(self) -> None:
        if not self._done:
            self._done = True
            self._cancel(self._seq)
