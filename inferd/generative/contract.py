"""What a generative model offers the front-ends (generate extension, gRPC decoupled, OpenAI API).

The engine (a runtime with ``platform: generative``) owns the tokenizer, the chat template, the
continuous-batching scheduler and the KV memory; a front-end turns its protocol's request into a
prompt and ``SamplingParams``, then relays ``TokenEvent``s in its protocol's shape. Closing the
iterator returned by ``generate`` (``aclose``, or dropping it when the client goes away) cancels the
sequence: its KV memory is freed at the next decode step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

FinishReason = Literal["stop", "length", "cancelled"]


@dataclass(frozen=True, slots=True)
class SamplingParams:
    """How to pick each next token. ``temperature`` 0 is greedy; ``top_k`` 0 and ``top_p`` 1 are off."""

    max_tokens: int = 128
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    # With a seed the same request gives the same tokens, whatever else runs in the same batch.
    seed: int | None = None
    # Generation ends before any of these strings; the text returned never contains them.
    stop: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True, slots=True)
class TokenEvent:
    """One step of one sequence, as streamed: the text it added and, on the last event, why it ended."""

    text: str  # new text since the previous event; may be "" (a token that completes no character)
    token_ids: tuple[int, ...] = ()
    finish_reason: FinishReason | None = None  # None on every event but the last
    prompt_tokens: int = 0
    completion_tokens: int = 0  # generated so far, this event included


@dataclass(frozen=True, slots=True)
class GeneratorLimits:
    context_length: int  # prompt + generated tokens of one sequence
    max_tokens: int  # the most tokens one request may ask for
    max_num_seqs: int  # sequences decoded together at one step
    extra: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class Generator(Protocol):
    """A loaded generative model version. Validation errors are ``InvalidRequest`` (400) raised before
    the first event; an over-full engine raises ``Unavailable`` (503) or ``RateLimited`` (429)."""

    @property
    def limits(self) -> GeneratorLimits: ...

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        """The model's chat template applied to ``messages``, ready for ``generate``."""
        ...

    def count_tokens(self, text: str) -> int: ...

    def generate(self, prompt: str, params: SamplingParams, request_id: str) -> AsyncIterator[TokenEvent]:
        """Stream one sequence's tokens; must be called on the server's event loop."""
        ...


@runtime_checkable
class GenerativeRuntime(Protocol):
    """A runtime (see ``inferd.runtimes.base.Runtime``) that serves a ``Generator``."""

    @property
    def generator(self) -> Generator: ...
