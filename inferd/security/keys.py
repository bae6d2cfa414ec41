"""API keys: the key file format, hashing, and a store that reloads without a restart.

Keys are random 256-bit tokens, so an unsalted SHA-256 of the key is safe to keep at rest (no dictionary
to try) and lets a request find its entry with one dict lookup instead of a slow KDF per request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from inferd.names import is_model_name
from inferd.security.apis import DEFAULT_APIS, Api
from inferd.security.tokens import MAX_TOKENS_PER_MINUTE

log = logging.getLogger(__name__)

HASH_PREFIX = "sha256:"
KEY_PREFIX = "inferd_"
# Model names checked per key are remembered; the bound stops unknown names from growing it forever.
_SCOPE_CACHE_LIMIT = 4096


def new_key() -> str:
    """A fresh random API key (256 bits), shown to its owner once and never stored."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The at-rest form of a key: ``sha256:<hex>``."""
    return HASH_PREFIX + hashlib.sha256(key.encode()).hexdigest()


class KeyEntrySpec(BaseModel):
    """One entry of the key file, as written by ``inferd keys add``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=128)
    hash: str
    models: list[str] = ["*"]
    apis: list[str] = [api.value for api in sorted(DEFAULT_APIS, key=lambda a: a.value)]
    # Per-key overrides of the server's rate limit (requests/s per model), burst and daily quota.
    rate: float | None = Field(default=None, gt=0)
    burst: int | None = Field(default=None, ge=1)
    daily_quota: int | None = Field(default=None, ge=1)
    # This key's token quota on generative routes (prompt + generated tokens per minute). Strict: a
    # `true` or `"1e9"` in the file is an error, not a number.
    tokens_per_minute: StrictInt | None = Field(default=None, ge=1, le=MAX_TOKENS_PER_MINUTE)

    @field_validator("hash")
    @classmethod
    def _check_hash(cls, value: str) -> str:
        digest = value.removeprefix(HASH_PREFIX)
        if not value.startswith(HASH_PREFIX) or len(digest) != 64 or not _is_hex(digest):
            raise ValueError("hash must be 'sha256:' and 64 hex digits (see `inferd keys hash`)")
        return HASH_PREFIX + digest.lower()

    @field_validator("apis")
    @classmethod
    def _check_apis(cls, value: list[str]) -> list[str]:
        known = {api.value for api in Api} | {"*"}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown apis {unknown}; choose from {sorted(known)}")
        return value


class KeyFileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntrySpec] = []


def _describe(exc: ValidationError) -> str:
    """Where and what, without the offending values: a misplaced key must not reach the logs."""
    problems = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = error["loc"]
        message = error["msg"]
        if error["type"] == "extra_forbidden":  # the field's name itself may be a pasted key
            loc = loc[:-1]
            message = f"unknown field; the fields are {', '.join(KeyEntrySpec.model_fields)}"
        where = ".".join(str(part) for part in loc) or "document"
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


@dataclass(eq=False)
class Principal:
    """A known key: its id (safe to log), what it may call, and its limits. Never holds the key."""

    id: str
    digest: bytes
    model_patterns: tuple[str, ...]
    apis: frozenset[Api]
    rate: float | None = None
    burst: int | None = None
    daily_quota: int | None = None
    tokens_per_minute: int | None = None
    _scope_cache: dict[str, bool] = field(default_factory=dict, repr=False)

    def may_use_model(self, model: str) -> bool:
        allowed = self._scope_cache.get(model)
        if allowed is None:
            # Patterns match model names only: a name has no '/', so fnmatch's '*' (which matches
            # '/') can never reach past a path separator, e.g. 'fraud-*' to 'fraud-a/../secret'.
            allowed = is_model_name(model) and any(
                fnmatchcase(model, pattern) for pattern in self.model_patterns
            )
            if len(self._scope_cache) >= _SCOPE_CACHE_LIMIT:
                self._scope_cache.clear()
            self._scope_cache[model] = allowed
        return allowed


def parse_key_entries(text: str, source: str) -> list[KeyEntrySpec]:
    """The entries of a key file (YAML or JSON); ValueError names the source, never a value."""
    try:
        document: Any = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:  # its message quotes the file's text, so only the position is kept
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ValueError(f"invalid key file {source}: not valid YAML/JSON{where}") from None
    try:
        spec = KeyFileSpec.model_validate(document)
    except ValidationError as exc:
        raise ValueError(f"invalid key file {source}: {_describe(exc)}") from None
    ids: set[str] = set()
    for entry in spec.keys:
        if entry.id in ids:
            raise ValueError(f"invalid key file {source}: key id '{entry.id}' appears twice")
        ids.add(entry.id)
    return spec.keys


def parse_key_document(text: str, source: str) -> dict[bytes, Principal]:
    """Parse a key file into principals by SHA-256 digest."""
    principals: dict[bytes, Principal] = {}
    for entry in parse_key_entries(text, source):
        digest = bytes.fromhex(entry.hash.removeprefix(HASH_PREFIX))
        apis = frozenset(Api) if "*" in entry.apis else frozenset(Api(name) for name in entry.apis)
        principals[digest] = Principal(
            entry.id,
            digest,
            tuple(entry.models),
            apis,
            entry.rate,
            entry.burst,
            entry.daily_quota,
            entry.tokens_per_minute,
        )
    return principals


class KeyStore:
    """Principals by key digest; ``reload()`` swaps the whole table at once, keeping the old on error."""

    def __init__(self, path: Path | None = None, document: str | None = None) -> None:
        self._path = path
        self._document = document
        self._mtime_ns: int | None = None
        self._by_digest: dict[bytes, Principal] = {}
        self.reload(strict=True)

    def lookup(self, key: str) -> Principal | None:
        digest = hashlib.sha256(key.encode()).digest()
        principal = self._by_digest.get(digest)
        # The dict lookup already found it; compare_digest keeps the final check constant-time.
        if principal is not None and hmac.compare_digest(principal.digest, digest):
            return principal
        return None

    def __len__(self) -> int:
        return len(self._by_digest)

    def reload(self, strict: bool = False) -> bool:
        """Read the sources again; True if the table changed. A bad file raises only when strict."""
        try:
            table: dict[bytes, Principal] = {}
            if self._document:
                table.update(parse_key_document(self._document, "INFERD_SECURITY__API_KEYS"))
            if self._path is not None:
                mtime_ns = os.stat(self._path).st_mtime_ns
                table.update(parse_key_document(self._path.read_text(), str(self._path)))
                self._mtime_ns = mtime_ns
        except (OSError, ValueError) as exc:
            if strict:
                raise ValueError(str(exc)) from None
            log.error("API keys not reloaded, the previous keys stay in force: %s", exc)
            return False
        self._by_digest = table
        log.info("API keys loaded: %d key(s)", len(table))
        return True

    def reload_if_changed(self) -> bool:
        """Reload when the key file's modification time moved (called by a periodic task)."""
        if self._path is None:
            return False
        try:
            mtime_ns = os.stat(self._path).st_mtime_ns
        except OSError:
            return False
        if mtime_ns == self._mtime_ns:
            return False
        self._mtime_ns = mtime_ns  # a bad file is reported once, not at every poll
        return self.reload()
