"""Chat templates (Jinja, as transformers applies them), rendered in a sandbox: a template is data
from the model directory and must not reach Python objects."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from inferd.errors import InvalidRequest, ModelLoadError
from inferd.generative.contract import ChatMessage

ROLES = ("system", "user", "assistant")


def _raise(message: str) -> NoReturn:
    raise InvalidRequest(f"chat template: {message}")


class ChatTemplate:
    def __init__(self, source: str, bos_token: str, eos_token: str) -> None:
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        environment.globals["raise_exception"] = _raise
        try:
            self._template = environment.from_string(source)
        except jinja2.TemplateError as exc:
            raise ModelLoadError(f"chat template: {exc}") from None
        self._bos = bos_token
        self._eos = eos_token

    def render(self, messages: Sequence[ChatMessage]) -> str:
        if not messages:
            raise InvalidRequest("messages must not be empty")
        for index, message in enumerate(messages):
            if message.role not in ROLES:
                raise InvalidRequest(f"messages[{index}].role must be one of {', '.join(ROLES)}")
            if not isinstance(message.content, str):
                raise InvalidRequest(f"messages[{index}].content must be a string")
        try:
            return self._template.render(
                messages=[{"role": m.role, "content": m.content} for m in messages],
                add_generation_prompt=True,
                bos_token=self._bos,
                eos_token=self._eos,
            )
        except InvalidRequest:
            raise
        except (jinja2.TemplateError, TypeError, ValueError) as exc:
            raise InvalidRequest(f"chat template could not render these messages: {exc}") from None
