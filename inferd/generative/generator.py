"""The ``Generator`` a generative runtime serves: validation, tokenization and the chat template in
front of the continuous-batching engine."""

from __future__ import annotations

from collections.abc import Sequence

from inferd.errors import InvalidRequest
from inferd.generative.chat import ChatTemplate
from inferd.generative.contract import ChatMessage, GeneratorLimits, SamplingParams
from inferd.generative.engine import Engine
from inferd.generative.files import ModelFiles
from inferd.generative.sampling import check_params
from inferd.generative.sequence import TokenStream

# Tokenizing is linear in the text, on the event loop: refuse a prompt that cannot fit the context
# however it tokenizes before spending time on it.
_MAX_CHARS_PER_TOKEN = 64


class OnnxGenerator:
    def __init__(self, engine: Engine, files: ModelFiles) -> None:
        self.engine = engine
        self._tokenizer = files.tokenizer
        self._template = ChatTemplate(files.chat_template, files.bos_token, files.eos_token)
        options = engine.options
        self._limits = GeneratorLimits(
            context_length=engine.context_length,
            max_tokens=min(options.max_tokens, engine.context_length - 1),
            max_num_seqs=options.max_num_seqs,
            extra={"max_tokens_in_flight": options.max_tokens_in_flight},
        )

    @property
    def limits(self) -> GeneratorLimits:
        return self._limits

    def render_chat(self, messages: Sequence[ChatMessage]) -> str:
        return self._template.render(messages)

    def count_tokens(self, text: str) -> int:
        return len(self._encode(text))

    def generate(self, prompt: str, params: SamplingParams, request_id: str) -> TokenStream:
        if not isinstance(prompt, str):
            raise InvalidRequest(f"the prompt must be a string, got {type(prompt).__name__}")
        check_params(params, self._limits.max_tokens)
        context = self._limits.context_length
        if len(prompt) > context * _MAX_CHARS_PER_TOKEN:
            raise InvalidRequest(f"the prompt is longer than the model's context of {context} tokens")
        ids = self._encode(prompt)
        if not ids:
            raise InvalidRequest("the prompt is empty")
        if len(ids) >= context:
            raise InvalidRequest(
                f"the prompt is {len(ids)} tokens; the model's context is {context} tokens "
                "(prompt and generated tokens together)"
            )
        max_new = min(params.max_tokens, context - len(ids))
        budget = self.engine.options.max_tokens_in_flight
        if len(ids) + max_new > budget:
            raise InvalidRequest(
                f"the prompt ({len(ids)} tokens) and max_tokens ({max_new}) exceed the model's KV memory "
                f"budget of {budget} tokens (max_tokens_in_flight)"
            )
        return self.engine.submit(ids, params, max_new, request_id)

    def _encode(self, text: str) -> list[int]:
        # The chat template writes the special tokens itself, as transformers does when it applies one.
        ids: list[int] = self._tokenizer.encode(text, add_special_tokens=False).ids
        return ids
