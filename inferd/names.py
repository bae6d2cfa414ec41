"""Model names and versions as every route takes them: names, never paths.

A model name is one path segment: 1-128 characters from ``A-Z a-z 0-9 _ . -``, starting with a letter,
a digit or ``_``. So it can never be ``.``, ``..``, a hidden directory, hold a ``/`` or ``\\``, or be
mistaken for a command-line option. A version is 1-18 decimal digits. Front-ends validate what a
client sends before anything else looks at it (scope checks, rate-limit buckets, the repository);
error texts describe the rule, never echo the text, so two refused names answer the same.
"""

from __future__ import annotations

import re
from typing import NewType

from inferd.errors import InvalidRequest

MAX_NAME_LENGTH = 128
MAX_VERSION_LENGTH = 18  # fits a 64-bit integer

ModelName = NewType("ModelName", str)

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")
_VERSION = re.compile(r"[0-9]+")
NAME_RULE = f"1-{MAX_NAME_LENGTH} letters, digits, '_', '.' or '-', starting with a letter, a digit or '_'"


class InvalidName(InvalidRequest):
    """A model name or version that breaks the rules (400 / INVALID_ARGUMENT); says which rule."""


def is_model_name(name: str) -> bool:
    return len(name) <= MAX_NAME_LENGTH and _NAME.fullmatch(name) is not None


def model_name(name: str) -> ModelName:
    """``name`` as a validated model name; raises InvalidName."""
    if is_model_name(name):
        return ModelName(name)
    if not name:
        raise InvalidName("a model name is required")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"a model name has at most {MAX_NAME_LENGTH} characters, got {len(name)}")
    raise InvalidName(f"invalid model name: a model name is {NAME_RULE}")


def model_version(version: str | None) -> str | None:
    """A requested version: None or empty means the default version; otherwise digits only."""
    if not version:
        return None
    if len(version) <= MAX_VERSION_LENGTH and _VERSION.fullmatch(version) is not None:
        return version
    raise InvalidName(f"invalid model version: a version is 1-{MAX_VERSION_LENGTH} decimal digits")
