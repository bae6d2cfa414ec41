"""Security flags of ``inferd serve`` and the ``inferd keys`` commands (kept apart from cli.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from inferd.security.apis import Api
from inferd.security.keys import KeyEntrySpec, KeyFileSpec, hash_key, new_key, parse_key_entries
from inferd.security.tokens import MAX_TOKENS_PER_MINUTE

F = TypeVar("F", bound=Callable[..., Any])

_FILE = click.Path(dir_okay=False, path_type=Path)
_EXISTING = click.Path(exists=True, dir_okay=False, path_type=Path)

# (flag name as click passes it, SecuritySettings field)
_FIELDS = (
    ("api_keys", "api_keys_file"),
    ("open_health", "open_health"),
    ("rate_limit", "rate_limit"),
    ("rate_burst", "rate_burst"),
    ("daily_quota", "daily_quota"),
    ("tokens_per_minute", "tokens_per_minute"),
    ("rate_limit_redis", "rate_limit_redis"),
    ("rate_limit_redis_failure", "rate_limit_redis_failure"),
    ("tls_cert", "tls_cert_file"),
    ("tls_key", "tls_key_file"),
    ("tls_client_ca", "tls_client_ca_file"),
    ("audit_log", "audit_log"),
)


def security_options(command: F) -> F:
    options = [
        click.option(
            "--api-keys",
            type=_EXISTING,
            help="Require API keys listed (hashed) in this file; reloaded on SIGHUP and on change.",
        ),
        click.option("--open-health", is_flag=True, default=None, help="Health endpoints need no key."),
        click.option(
            "--rate-limit",
            type=click.FloatRange(min=0, min_open=True),
            help="Requests/s per caller per model (token bucket).",
        ),
        click.option(
            "--rate-burst",
            type=click.IntRange(min=1),
            help="Token bucket size (default: one second's worth).",
        ),
        click.option(
            "--daily-quota", type=click.IntRange(min=1), help="Inference requests per caller per UTC day."
        ),
        click.option(
            "--tokens-per-minute",
            type=click.IntRange(min=1, max=MAX_TOKENS_PER_MINUTE),
            help="Token quota of generative routes: prompt + generated tokens per caller per minute.",
        ),
        click.option("--rate-limit-redis", help="redis://host:port/db shared by replicas for limits."),
        click.option(
            "--rate-limit-redis-failure",
            type=click.Choice(["open", "closed"]),
            help="Redis unreachable: let requests through (open, default) or answer 503 (closed).",
        ),
        click.option("--tls-cert", type=_EXISTING, help="TLS certificate chain (PEM), REST and gRPC."),
        click.option("--tls-key", type=_EXISTING, help="TLS private key (PEM)."),
        click.option("--tls-client-ca", type=_EXISTING, help="Require client certificates from this CA."),
        click.option("--audit-log", type=_FILE, help="Append a JSON line per request to this file."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def security_overrides(given: dict[str, Any]) -> dict[str, Any]:
    return {field: given[flag] for flag, field in _FIELDS if flag in given}


@click.group()
def keys() -> None:
    """Create API keys and their hashed entries for --api-keys."""


@keys.command("add")
@click.argument("key_file", type=_FILE)
@click.option("--id", "key_id", required=True, help="Name of the key, shown in logs and the audit log.")
@click.option("--models", default="*", show_default=True, help="Comma-separated model names or globs.")
@click.option(
    "--apis",
    default="inference,metadata,health",
    show_default=True,
    help=f"Comma-separated, from: {', '.join(api.value for api in Api)}, or *.",
)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="This key's requests/s per model.")
@click.option("--burst", type=click.IntRange(min=1), help="This key's token bucket size.")
@click.option("--daily-quota", type=click.IntRange(min=1), help="This key's inference requests per UTC day.")
@click.option(
    "--tokens-per-minute",
    type=click.IntRange(min=1, max=MAX_TOKENS_PER_MINUTE),
    help="This key's prompt + generated tokens per minute on generative routes.",
)
def add_key(
    key_file: Path,
    key_id: str,
    models: str,
    apis: str,
    rate: float | None,
    burst: int | None,
    daily_quota: int | None,
    tokens_per_minute: int | None,
) -> None:
    """Make a new key, append its hashed entry to KEY_FILE, and print the key (shown only once)."""
    try:
        spec = _read(key_file)
        if any(entry.id == key_id for entry in spec.keys):
            raise ValueError(f"{key_file} already has a key with id '{key_id}'")
        key = new_key()
        entry = KeyEntrySpec(
            id=key_id,
            hash=hash_key(key),
            models=_split(models),
            apis=_split(apis),
            rate=rate,
            burst=burst,
            daily_quota=daily_quota,
            tokens_per_minute=tokens_per_minute,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    spec.keys.append(entry)
    _write(key_file, spec)
    click.echo(key)


@keys.command("remove")
@click.argument("key_file", type=_EXISTING)
@click.option("--id", "key_id", required=True, help="Id of the key to revoke.")
def remove_key(key_file: Path, key_id: str) -> None:
    """Revoke a key: drop its entry from KEY_FILE (a running server picks it up within seconds)."""
    try:
        spec = _read(key_file)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    kept = [entry for entry in spec.keys if entry.id != key_id]
    if len(kept) == len(spec.keys):
        raise click.ClickException(f"{key_file} has no key with id '{key_id}'")
    _write(key_file, KeyFileSpec(keys=kept))
    click.echo(f"removed key '{key_id}'")


def _read(key_file: Path) -> KeyFileSpec:
    if not key_file.exists():
        return KeyFileSpec()
    text = key_file.read_text()
    return KeyFileSpec(keys=list(parse_key_entries(text, str(key_file))))


def _write(key_file: Path, spec: KeyFileSpec) -> None:
    entries = [entry.model_dump(exclude_none=True) for entry in spec.keys]
    temporary = key_file.with_name(key_file.name + ".tmp")
    temporary.write_text(yaml.safe_dump({"keys": entries}, sort_keys=False))
    temporary.chmod(0o600)
    temporary.replace(key_file)  # atomic: a running server never reads half a file


@keys.command("hash")
@click.argument("key", required=False)
def hash_command(key: str | None) -> None:
    """Print the sha256:... entry for KEY (read from stdin when not given, to keep it out of history)."""
    if key is None:
        key = sys.stdin.readline().strip()
    if not key:
        raise click.ClickException("no key given")
    click.echo(hash_key(key))


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]
