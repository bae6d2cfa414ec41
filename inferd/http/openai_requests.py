"""OpenAI request bodies checked into what the data plane needs (no I/O here).

Each body field is known or refused: an application ported from OpenAI that sets a feature inferd does
not have (logprobs, tools, n > 1) gets a 400 naming the field, rather than an answer quietly without it.
Fields with a neutral value (``n: 1``, ``presence_penalty: 0``, ``user``) are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inferd.errors import InvalidRequest
from inferd.generative.contract import ChatMessage

# OpenAI's default for /v1/completions; chat completions default to what the model allows.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
_SAMPLING = ("temperature", "top_p", "top_k", "seed", "stop")
# Accepted only at these values (OpenAI's defaults): anything else is a feature not served.
_NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "best_of": (None, 1),
    "presence_penalty": (None, 0, 0.0),
    "frequency_penalty": (None, 0, 0.0),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "echo": (None, False),
    "logit_bias": (None, {}),
    "suffix": (None,),
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "parallel_tool_calls": (None,),
    "response_format": (None, {"type": "text"}),
}
_COMMON = {"model", "stream", "stream_options", "user", "max_tokens", *_SAMPLING, *_NEUTRAL}
_COMPLETION_FIELDS = frozenset({*_COMMON, "prompt"})
_CHAT_FIELDS = frozenset({*_COMMON, "messages", "max_completion_tokens"})


class BadField(InvalidRequest):
    """A 400 naming the body field at fault (OpenAI's error ``param``)."""

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


_ROLES = frozenset({"system", "user", "assistant", "developer"})
MAX_MESSAGES = 1024


@dataclass(frozen=True, slots=True)
class GenerationRequest:
    model: str
    stream: bool
    include_usage: bool  # stream_options.include_usage: a last chunk with the usage
    sampling: dict[str, Any]  # for protocol.sampling.sampling_params
    prompt: str | None = None  # /v1/completions
    messages: tuple[ChatMessage, ...] = ()  # /v1/chat/completions


def completion_request(body: dict[str, Any]) -> GenerationRequest:
    _known(body, _COMPLETION_FIELDS)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BadField("'prompt' must be a string (or a list of one string)", "prompt")
    sampling = _sampling(body, "max_tokens")
    sampling.setdefault("max_tokens", COMPLETIONS_DEFAULT_MAX_TOKENS)
    return GenerationRequest(_model(body), *_stream(body), sampling, prompt=prompt)


def chat_request(body: dict[str, Any]) -> GenerationRequest:
    _known(body, _CHAT_FIELDS)
    if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
        raise BadField("give 'max_tokens' or 'max_completion_tokens', not both", "max_tokens")
    sampling = _sampling(body, "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens")
    return GenerationRequest(_model(body), *_stream(body), sampling, messages=_messages(body.get("messages")))


def embedding_request(body: dict[str, Any]) -> tuple[str, list[str], str]:
    """(model, texts, encoding format)."""
    _known(body, frozenset({"model", "input", "encoding_format", "user", "dimensions"}))
    if body.get("dimensions") is not None:
        raise BadField("'dimensions' is not supported: the model's own size is returned", "dimensions")
    texts = body.get("input")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise BadField("'input' must be a string or a non-empty list of strings", "input")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise BadField("'encoding_format' must be 'float' or 'base64'", "encoding_format")
    return _model(body), texts, encoding


def _known(body: dict[str, Any], fields: frozenset[str]) -> None:
    unknown = sorted(set(body) - fields)
    if unknown:
        raise BadField(f"unknown or unsupported field(s): {', '.join(unknown)}", unknown[0])
    for key, allowed in _NEUTRAL.items():
        if body.get(key) is not None and body[key] not in allowed:
            raise BadField(f"'{key}' = {body[key]!r} is not supported", key)


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BadField("'model' must be the name of a model (GET /v1/models lists them)", "model")
    return model


def _stream(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = body.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise BadField("'stream' must be a boolean", "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not stream:
        raise BadField("'stream_options' is only allowed with 'stream': true", "stream_options")
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise BadField("'stream_options' takes only 'include_usage'", "stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise BadField("'stream_options.include_usage' must be a boolean", "stream_options")
    return stream, include


def _sampling(body: dict[str, Any], max_tokens_key: str) -> dict[str, Any]:
    sampling = {key: body[key] for key in _SAMPLING if body.get(key) is not None}
    if body.get(max_tokens_key) is not None:
        sampling["max_tokens"] = body[max_tokens_key]
    return sampling


def _messages(value: Any) -> tuple[ChatMessage, ...]:
    if not isinstance(value, list) or not value:
        raise BadField("'messages' must be a non-empty list of messages", "messages")
    if len(value) > MAX_MESSAGES:
        raise BadField(f"'messages' holds at most {MAX_MESSAGES} messages", "messages")
    messages = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise BadField(f"{where} must be an object with 'role' and 'content'", "messages")
        extra = sorted(set(message) - {"role", "content", "name"})
        if extra:
            raise BadField(f"{where}: unsupported field(s) {', '.join(extra)}", "messages")
        role = message.get("role")
        if role not in _ROLES:
            raise BadField(f"{where}.role must be one of {', '.join(sorted(_ROLES))}", "messages")
        messages.append(ChatMessage("system" if role == "developer" else role, _content(message, where)))
    return tuple(messages)


def _content(message: dict[str, Any], where: str) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    # The content-parts form: text parts only (no images on a text model).
    if isinstance(content, list) and content:
        texts = []
        for part in content:
            if (
                not isinstance(part, dict)
                or part.get("type") != "text"
                or not isinstance(part.get("text"), str)
            ):
                raise BadField(f"{where}.content: only text parts are supported", "messages")
            texts.append(part["text"])
        return "".join(texts)
    raise BadField(f"{where}.content must be a string or a list of text parts", "messages")
