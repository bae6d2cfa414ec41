"""Turning a sequence's token ids into streamed text: whole characters only, stop strings held back."""

from __future__ import annotations

from tokenizers import Tokenizer


class Detokenizer:
    """Incremental decoding: each call returns the text the new token completes. Bytes of a character
    split across tokens wait for the token that completes it, so no event carries broken UTF-8."""

    __slots__ = ("_ids", "_prefix", "_read", "_tokenizer")

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._ids: list[int] = []
        # Decoding from ``_prefix`` keeps a little context (byte-level BPE merges spaces into tokens)
        # without decoding the whole sequence at every step.
        self._prefix = 0
        self._read = 0

    def push(self, token: int) -> str:
        self._ids.append(token)
        decode = self._tokenizer.decode
        before = decode(self._ids[self._prefix : self._read], skip_special_tokens=True)
        text = decode(self._ids[self._prefix :], skip_special_tokens=True)
        if text.endswith("\ufffd") or len(text) <= len(before):
            return ""  # an incomplete character: wait for its next bytes
        self._prefix, self._read = self._read, len(self._ids)
        return text[len(before) :]


class StopMatcher:
    """Holds back the tail of the text that could be the start of a stop string, so a stop string split
    across tokens is found before any of it is streamed."""

    __slots__ = ("_held", "_keep", "_stops")

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._stops = stops
        self._keep = max((len(stop) for stop in stops), default=1) - 1
        self._held = ""

    def push(self, text: str) -> tuple[str, bool]:
        """The text now safe to stream, and whether a stop string was reached (text ends before it)."""
        if not self._stops:
            return text, False
        held = self._held + text
        found = [index for index in (held.find(stop) for stop in self._stops) if index >= 0]
        if found:
            self._held = ""
            return held[: min(found)], True
        cut = max(len(held) - self._keep, 0)
        self._held = held[cut:]
        return held[:cut], False

    def flush(self) -> str:
        """What is held back, once the sequence ended for another reason."""
        held, self._held = self._held, ""
        return held
