"""Build and deploy inferd as a Ray Serve application (docs/deploy.md, "Ray Serve")."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inferd.ray.replica import InferdReplica

if TYPE_CHECKING:
    from ray.serve import Application

# Ray's proxies parse the request with inferd's gRPC handlers (the light inference parse and its
# refusals), then hand the parsed request to a replica.
GRPC_SERVICER_FUNCTIONS = ["inferd.grpc.handlers.add_servicer"]
APP_NAME = "inferd"


@dataclass(frozen=True)
class Scaling:
    """Replica count: fixed (``replicas``) or autoscaled by Ray on ongoing requests per replica."""

    replicas: int | None = 1
    min_replicas: int = 1
    max_replicas: int = 1
    # Ray adds replicas when the average ongoing requests per replica exceed this.
    target_ongoing_requests: float = 32.0
    # Ray's default (5) would stop a replica's batcher from ever seeing a batch: calls beyond it wait
    # in Ray's router. Batching needs many calls in flight per replica.
    max_ongoing_requests: int = 256
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 30.0

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"max_ongoing_requests": self.max_ongoing_requests}
        if self.replicas is not None:
            options["num_replicas"] = self.replicas
        else:
            options["autoscaling_config"] = {
                "min_replicas": self.min_replicas,
                "max_replicas": self.max_replicas,
                "target_ongoing_requests": self.target_ongoing_requests,
                "upscale_delay_s": self.upscale_delay_s,
                "downscale_delay_s": self.downscale_delay_s,
            }
        return options


@dataclass(frozen=True)
class Deployment:
    """What ``inferd ray deploy`` deploys: the settings every replica builds its server from."""

    model_repository: Path
    scaling: Scaling = Scaling()
    # Further inferd settings (the nested keys of inferd.settings.Settings), e.g.
    # {"scheduling": {"max_queue_size": 256}}; INFERD_* variables apply too, on each node.
    settings: dict[str, Any] = field(default_factory=dict)
    # CPUs Ray reserves per replica (its scheduler packs replicas onto nodes by this).
    num_cpus: float = 1.0

    def replica_settings(self) -> dict[str, Any]:
        # Ray's proxies own the ports; a replica opens none of its own.
        return {
            **self.settings,
            "model_repository": str(self.model_repository.resolve()),
            "grpc": {**self.settings.get("grpc", {}), "enabled": False},
        }


def application(deployment: Deployment) -> Application:
    """The Serve application: one deployment of ``InferdReplica`` with REST as its ASGI ingress."""
    from ray import serve

    replica: Any = serve.deployment(
        serve.ingress()(InferdReplica),
        name="InferdReplica",
        ray_actor_options={"num_cpus": deployment.num_cpus},
        **deployment.scaling.options(),
    )
    application: Application = replica.bind(deployment.replica_settings())
    return application


def deploy(
    deployment: Deployment,
    address: str = "auto",
    http_host: str = "127.0.0.1",
    http_port: int = 8000,
    grpc_port: int = 9000,
) -> None:
    """Start Serve's proxies on every node of the Ray cluster at ``address`` and deploy, detached:
    the application keeps running after this returns, until ``undeploy``."""
    import ray
    from ray import serve

    ray.init(address=address, log_to_driver=False)
    serve.start(
        proxy_location="EveryNode",
        http_options={"host": http_host, "port": http_port},
        grpc_options={"port": grpc_port, "grpc_servicer_functions": GRPC_SERVICER_FUNCTIONS},
    )
    serve.run(application(deployment), name=APP_NAME, route_prefix="/", blocking=False)


def undeploy(address: str = "auto") -> None:
    import ray
    from ray import serve

    ray.init(address=address, log_to_driver=False)
    serve.delete(APP_NAME)


def build_app(args: dict[str, Any]) -> Application:
    """Application builder for Ray's declarative config (``serve deploy``, a RayService on KubeRay):
    ``import_path: inferd.ray.app:build_app`` with ``args`` naming ``model_repository`` and, optionally,
    ``replicas`` or ``min_replicas``/``max_replicas``/``target_ongoing_requests``,
    ``max_ongoing_requests``, ``num_cpus`` and ``settings`` (see ``Deployment``)."""
    known = {
        "model_repository",
        "replicas",
        "min_replicas",
        "max_replicas",
        "target_ongoing_requests",
        "max_ongoing_requests",
        "upscale_delay_s",
        "downscale_delay_s",
        "num_cpus",
        "settings",
    }
    unknown = sorted(set(args) - known)
    if unknown:
        raise ValueError(f"inferd.ray.app:build_app: unknown args {unknown}; known: {sorted(known)}")
    if "model_repository" not in args:
        raise ValueError("inferd.ray.app:build_app: args.model_repository is required")
    scaling_keys = known - {"model_repository", "num_cpus", "settings"}
    scaling = {key: args[key] for key in scaling_keys if key in args}
    if "replicas" not in scaling and ("min_replicas" in scaling or "max_replicas" in scaling):
        scaling["replicas"] = None
    deployment = Deployment(
        Path(args["model_repository"]),
        Scaling(**scaling),
        dict(args.get("settings", {})),
        float(args.get("num_cpus", 1.0)),
    )
    return application(deployment)
