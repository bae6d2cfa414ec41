"""``inferd ray``: deploy the model repository as a Ray Serve application on a running Ray cluster."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def _require_ray() -> None:
    try:
        import inferd.ray  # noqa: F401
    except ImportError as exc:
        click.echo(f"inferd ray: {exc}", err=True)
        sys.exit(1)


@click.group()
def ray() -> None:
    """Serve on a Ray cluster (Ray Serve): replicas across nodes, autoscaled by Ray."""


@ray.command()
@click.argument("model_repository", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--address", default="auto", show_default=True, help="The Ray cluster (ray start --head).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address Ray's proxies listen on.")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=9000, show_default=True)
@click.option("--replicas", type=int, help="A fixed number of replicas (default: autoscale).")
@click.option("--min-replicas", type=int, default=1, show_default=True)
@click.option("--max-replicas", type=int, default=2, show_default=True)
@click.option(
    "--target-ongoing-requests",
    type=float,
    default=32.0,
    show_default=True,
    help="Ray adds replicas above this many ongoing requests per replica.",
)
@click.option(
    "--max-ongoing-requests",
    type=int,
    default=256,
    show_default=True,
    help="Calls in flight per replica (its batcher needs many).",
)
@click.option(
    "--upscale-delay",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds above target before Ray adds a replica.",
)
@click.option("--num-cpus", type=float, default=1.0, show_default=True, help="CPUs Ray reserves per replica.")
@click.option(
    "--settings-json",
    help='More inferd settings for every replica, e.g. \'{"scheduling": {"max_queue_size": 256}}\'.',
)
def deploy(
    model_repository: Path,
    address: str,
    host: str,
    http_port: int,
    grpc_port: int,
    replicas: int | None,
    min_replicas: int,
    max_replicas: int,
    target_ongoing_requests: float,
    max_ongoing_requests: int,
    upscale_delay: float,
    num_cpus: float,
    settings_json: str | None,
) -> None:
    """Deploy MODEL_REPOSITORY on the Ray cluster at ADDRESS (detached: it serves until undeploy)."""
    _require_ray()
    from inferd.ray.app import Deployment, Scaling
    from inferd.ray.app import deploy as run_deploy

    settings: dict[str, Any] = {}
    if settings_json:
        try:
            settings = json.loads(settings_json)
        except ValueError as exc:
            raise click.BadParameter(f"not JSON: {exc}", param_hint="--settings-json") from None
        if not isinstance(settings, dict):
            raise click.BadParameter("must be a JSON object", param_hint="--settings-json")
    scaling = Scaling(
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max(max_replicas, min_replicas),
        target_ongoing_requests=target_ongoing_requests,
        max_ongoing_requests=max_ongoing_requests,
        upscale_delay_s=upscale_delay,
    )
    deployment = Deployment(model_repository, scaling, settings, num_cpus)
    run_deploy(deployment, address, host, http_port, grpc_port)
    click.echo(f"inferd deployed on Ray: REST on {host}:{http_port}, gRPC on {host}:{grpc_port}")


@ray.command()
@click.option("--address", default="auto", show_default=True)
def undeploy(address: str) -> None:
    """Remove the inferd application from the Ray cluster."""
    _require_ray()
    from inferd.ray.app import undeploy as run_undeploy

    run_undeploy(address)
    click.echo("inferd removed from Ray")
