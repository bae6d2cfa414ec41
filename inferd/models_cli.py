"""``inferd models ...``: manage the models of a running server over its REST API."""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from inferd.names import InvalidName, model_name

_TIMEOUT_S = 600.0  # a load waits for the model to load and warm up


@dataclass(frozen=True)
class Target:
    url: str
    api_key: str | None


def _call(target: Target, method: str, path: str, document: dict[str, Any] | None = None) -> Any:
    body = json.dumps(document).encode() if document is not None else b"" if method == "POST" else None
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        headers["X-API-Key"] = target.api_key
    url = target.url
    request = urllib.request.Request(url.rstrip("/") + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            message = json.loads(raw)["error"]
        except (ValueError, KeyError, TypeError):
            message = raw.decode(errors="replace") or exc.reason
        click.echo(f"inferd: {method} {path}: HTTP {exc.code}: {message}", err=True)
        sys.exit(1)
    except urllib.error.URLError as exc:
        click.echo(f"inferd: cannot reach {url}: {exc.reason}", err=True)
        sys.exit(1)
    return json.loads(raw) if raw.strip() else None


def _name(context: click.Context, parameter: click.Parameter, value: str) -> str:
    """NAME checked here as the server checks it: a name, never a path put into the URL."""
    try:
        return model_name(value)
    except InvalidName as exc:
        raise click.BadParameter(exc.message) from None


def _print(document: Any) -> None:
    click.echo(json.dumps(document, indent=2))


@click.group()
@click.option(
    "--url",
    default="http://127.0.0.1:8000",
    show_default=True,
    envvar="INFERD_URL",
    help="The server's REST address.",
)
@click.option(
    "--api-key",
    envvar="INFERD_API_KEY",
    help="Key for a server with API keys (docs/security.md); needs the repository scope.",
)
@click.pass_context
def models(context: click.Context, url: str, api_key: str | None) -> None:
    """List, load, unload, roll out and roll back models on a running server."""
    context.obj = Target(url, api_key)


@models.command("list")
@click.pass_obj
def list_models(target: Target) -> None:
    """Every model and version with its state (the repository index)."""
    rows = _call(target, "POST", "/v2/repository/index", {})
    table = [("MODEL", "VERSION", "STATE", "REASON")] + [
        (row["name"], row.get("version") or "-", row["state"], row.get("reason", "")) for row in rows
    ]
    name_width = max(len(name) for name, *_ in table)
    for name, version, state, reason in table:
        click.echo(f"{name:<{name_width}}  {version:>7}  {state:<11}  {reason}".rstrip())


@models.command()
@click.argument("name", callback=_name)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A configuration (YAML or JSON) used instead of the model's config.yaml.",
)
@click.pass_obj
def load(target: Target, name: str, config_file: Path | None) -> None:
    """Load (or reload) NAME; returns once it serves (explicit model control mode)."""
    document: dict[str, Any] = {}
    if config_file is not None:
        document = {"parameters": {"config": config_file.read_text()}}
    _call(target, "POST", f"/v2/repository/models/{name}/load", document)
    click.echo(f"loaded {name}")


@models.command()
@click.argument("name", callback=_name)
@click.pass_obj
def unload(target: Target, name: str) -> None:
    """Unload NAME once its queued requests finish (explicit model control mode)."""
    _call(target, "POST", f"/v2/repository/models/{name}/unload", {})
    click.echo(f"unloaded {name}")


@models.command()
@click.argument("name", callback=_name)
@click.option("--candidate", type=int, required=True, help="The version to try.")
@click.option("--percent", type=float, default=10.0, show_default=True, help="Share of default traffic.")
@click.option("--shadow", is_flag=True, help="Run the candidate on copies; answers stay stable's.")
@click.option("--promote-after-requests", type=int, help="Promote after this many passing requests.")
@click.option("--promote-after-s", type=float, help="Promote after this many passing seconds.")
@click.option("--max-error-rate", type=float, help="Guard rail (default 0.05).")
@click.option("--max-latency-ratio", type=float, help="Guard rail on p99 vs stable (default 3).")
@click.option("--max-disagreement-rate", type=float, help="Shadow guard rail (default 0).")
@click.option("--tolerance", type=float, help="Shadow: absolute output tolerance (default 1e-5).")
@click.option("--min-requests", type=int, help="Requests before any judgement (default 20).")
@click.pass_obj
def rollout(target: Target, /, name: str, **options: Any) -> None:
    """Start a canary (or shadow) rollout of a candidate version of NAME."""
    guard_keys = ("max_error_rate", "max_latency_ratio", "max_disagreement_rate", "tolerance", "min_requests")
    guard = {key: options[key] for key in guard_keys if options[key] is not None}
    document: dict[str, Any] = {
        "candidate": options["candidate"],
        "canary_percent": options["percent"],
        "shadow": options["shadow"],
    }
    for key in ("promote_after_requests", "promote_after_s"):
        if options[key] is not None:
            document[key] = options[key]
    if guard:
        document["guard"] = guard
    _print(_call(target, "POST", f"/v2/repository/models/{name}/rollout", document))


@models.command()
@click.argument("name", callback=_name)
@click.pass_obj
def promote(target: Target, name: str) -> None:
    """Make the candidate of NAME's running rollout its default version now."""
    result = _call(target, "POST", f"/v2/repository/models/{name}/promote", {})
    click.echo(f"{name}: default version is now {result['default_version']}")


@models.command()
@click.argument("name", callback=_name)
@click.pass_obj
def rollback(target: Target, name: str) -> None:
    """Return NAME's traffic to its last good version (ends a running rollout)."""
    result = _call(target, "POST", f"/v2/repository/models/{name}/rollback", {})
    click.echo(f"{name}: default version is now {result['default_version']}")


@models.command()
@click.argument("name", callback=_name)
@click.pass_obj
def status(target: Target, name: str) -> None:
    """NAME's lifecycle: versions, cold-start figures, rollout, recent decisions."""
    _print(_call(target, "GET", f"/v2/repository/models/{name}/lifecycle"))
