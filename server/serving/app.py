"""The Ray Serve application: one ModelReplica deployment per variant, one Router.

`build_app(args)` is the import path for `serve run` and Serve config files:
  import_path: embedpool.server.serving.app:build_app
  args: {config: /path/catalogue.yaml, grpc_port: 50051, http_port: 8080}
"""

from __future__ import annotations

from typing import Any, cast

from ray.serve import Application, Deployment

from embedpool.server.config.catalogue import Catalogue, VariantConfig, load_catalogue
from embedpool.server.serving import autoscale
from embedpool.server.serving.replica import ModelReplica
from embedpool.server.serving.router import Router

APP_NAME = "embedpool"
DEFAULT_GRPC_PORT = 50051
# The OpenAI-compatible HTTP front (fronts/http_server.py); 8080, not Ray Serve's HTTP proxy's 8000.
DEFAULT_HTTP_PORT = 8080
# Ray's gRPC proxy needs these importable to route the pool's RPCs to the Router.
GRPC_SERVICER_FUNCTIONS = [
    "embedpool.v1.embedding_service_pb2_grpc.add_EmbeddingServiceServicer_to_server",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]

# Ray Serve settings the pool is measured with (BENCHMARKS.md): user code and the handle's
# router on the replica's own event loop, so a call to a replica costs no thread or loop hop.
# Not RAY_SERVE_USE_GRPC_BY_DEFAULT: it saved ~0.8 ms more per hop but caps messages between
# deployments at 4 MiB (a 10 MB text fails) and loosens Ray's queue bound.
SERVING_ENV = {
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
}

# The environment of a Ray node that the pool starts itself (`embedpool serve` without
# --address; the tests' clusters): read by the raylet and the Serve controller at their start,
# so it goes into os.environ before ray.init, not into an app's runtime_env.
NODE_ENV = {
    # Ray runs workers at nice 15 to shield its own daemons; on a node given to the pool the
    # replicas are the work, and a load generator or sidecar at nice 0 must not starve them
    # (two busy loops beside the pool left its replicas ~3% of a core each).
    "RAY_worker_niceness": "0",
    # A proxy has 5 s to answer its first ready check; on a busy node importing Serve takes
    # longer, the controller kills it and serve.start fails ("actor killed by ray.kill").
    "RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S": "30",
}


def replica_options(variant: VariantConfig, max_queued_requests: int, direct: bool = True) -> dict[str, Any]:
    """Ray Serve deployment options for one variant."""
    scale = variant.autoscaling
    options: dict[str, Any] = {
        "ray_actor_options": {
            "num_cpus": variant.resources.num_cpus,
            "num_gpus": variant.resources.num_gpus,
        },
        "max_ongoing_requests": variant.batching.max_ongoing_requests,
        "max_queued_requests": max_queued_requests,
        "graceful_shutdown_timeout_s": 20,
    }
    if scale.min_replicas == scale.max_replicas:
        options["num_replicas"] = scale.min_replicas
    else:
        options["autoscaling_config"] = {
            "min_replicas": scale.min_replicas,
            "max_replicas": scale.max_replicas,
            "initial_replicas": scale.initial_replicas,
            "target_ongoing_requests": scale.target_ongoing_requests,
            "upscale_delay_s": scale.upscale_delay_s,
            "downscale_delay_s": scale.downscale_delay_s,
        }
        if direct:  # direct batches bypass Serve's counters; the replicas report them
            options["autoscaling_config"]["policy"] = {"policy_function": autoscale.POLICY}
    return options


def build(
    catalogue: Catalogue,
    grpc_port: int | None = DEFAULT_GRPC_PORT,
    grpc_host: str = "0.0.0.0",
    http_port: int | None = DEFAULT_HTTP_PORT,
) -> Application:
    handles: dict[str, Application] = {}
    cache_dir = str(catalogue.resolved_cache_dir())
    router = catalogue.router
    for model in catalogue.models:
        model_cfg = model.model_dump(mode="json")
        for variant in model.variants:
            name = catalogue.deployment_name(model.name, variant.name)
            opts = replica_options(variant, catalogue.limits.max_queued_requests, router.direct)
            # cast: @serve.deployment made the class a Deployment, but mypy keeps a decorated class's
            # own type (it does not apply class decorators' return types).
            handles[name] = (
                cast(Deployment, ModelReplica)
                .options(name=name, **opts)
                .bind(
                    model_cfg,
                    variant.model_dump(mode="json"),
                    cache_dir,
                    router.direct,
                    catalogue.telemetry.model_dump(mode="json"),
                )
            )
    return (
        cast(Deployment, Router)
        .options(
            num_replicas=router.num_replicas,
            ray_actor_options={"num_cpus": router.num_cpus},
            graceful_shutdown_timeout_s=20,
        )
        .bind(
            catalogue.model_dump(mode="json"), handles, grpc_port, grpc_host, router.max_in_flight, http_port
        )
    )


def build_app(args: dict[str, Any]) -> Application:
    """Entry point for `serve run embedpool.server.serving.app:build_app config=...` and Serve configs.

    args: config (catalogue file; default: the bundled model), catalogue (the
    same as an inline mapping), grpc_port (the pool's own port; 0 disables it
    and leaves only Ray's gRPC proxy), grpc_host (also the HTTP front's address),
    http_port (the OpenAI-compatible HTTP front; 0 disables it).
    """
    if args.get("catalogue"):
        catalogue = Catalogue.model_validate(args["catalogue"])
    else:
        catalogue = load_catalogue(args.get("config"))
    port = int(args.get("grpc_port", DEFAULT_GRPC_PORT))
    http_port = int(args.get("http_port", DEFAULT_HTTP_PORT))
    return build(catalogue, port or None, str(args.get("grpc_host", "0.0.0.0")), http_port or None)
