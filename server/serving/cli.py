"""`embedpool serve`: start (or join) a Ray cluster, deploy the pool, wait, drain.

Ctrl-C or SIGTERM drains: the Router stops taking calls and finishes in-flight
ones, Serve shuts down, and a Ray cluster this command started is stopped.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time

from embedpool.server.serving.app import (
    APP_NAME,
    DEFAULT_GRPC_PORT,
    DEFAULT_HTTP_PORT,
    GRPC_SERVICER_FUNCTIONS,
    NODE_ENV,
    SERVING_ENV,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="model catalogue (YAML/TOML); default: the bundled all-MiniLM-L6-v2")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_GRPC_PORT, help="the pool's gRPC port (default %(default)s)"
    )
    parser.add_argument(
        "--http-port",
        type=int,
        default=DEFAULT_HTTP_PORT,
        help="the OpenAI-compatible HTTP port: POST /v1/embeddings, GET /v1/models, GET /health "
        "(default %(default)s; 0: off)",
    )
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default %(default)s)")
    parser.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help="join this Ray cluster (default: $RAY_ADDRESS, else start a local one)",
    )
    parser.add_argument(
        "--ray-grpc-port",
        type=int,
        default=0,
        help="also serve through Ray Serve's gRPC proxy on this port (0: off)",
    )
    parser.add_argument("--num-cpus", type=int, default=None, help="CPUs for a local Ray cluster")
    parser.add_argument(
        "--otlp-endpoint",
        default=None,
        metavar="URL",
        help="export OpenTelemetry traces to this OTLP/gRPC collector, e.g. http://localhost:4317 "
        "(default: the catalogue's telemetry, else $OTEL_EXPORTER_OTLP_ENDPOINT; none: off)",
    )


def run(args: argparse.Namespace) -> int:
    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    from embedpool.server.config.catalogue import load_catalogue
    from embedpool.server.errors import ConfigError
    from embedpool.server.serving.app import build

    try:
        catalogue = load_catalogue(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    if args.otlp_endpoint:
        telemetry = catalogue.telemetry.model_copy(update={"otlp_endpoint": args.otlp_endpoint})
        catalogue = catalogue.model_copy(update={"telemetry": telemetry})
    started_ray = not args.address
    if started_ray:
        for key, value in {**NODE_ENV, **SERVING_ENV}.items():
            os.environ.setdefault(key, value)
        # Ray's gRPC proxy accepts up to 2 GiB by default; hold it to the pool's own limit.
        os.environ.setdefault("RAY_SERVE_GRPC_MAX_MESSAGE_SIZE", str(catalogue.limits.max_message_bytes))
    ray.init(
        address=args.address or "local",
        num_cpus=args.num_cpus if started_ray else None,
        include_dashboard=False,
        logging_level=logging.WARNING,
        namespace="serve",
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        grpc_options = None
        if args.ray_grpc_port:
            grpc_options = gRPCOptions(
                port=args.ray_grpc_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS
            )
        serve.start(
            proxy_location="HeadOnly" if args.ray_grpc_port else "Disabled",
            grpc_options=grpc_options,
        )
        t0 = time.monotonic()
        serve.run(
            build(catalogue, args.port, args.host, args.http_port or None),
            name=APP_NAME,
            route_prefix=f"/{APP_NAME}",
            logging_config={"enable_access_log": False},  # a line per call costs CPU on the hot path
        )
        host = "localhost" if args.host in ("0.0.0.0", "::") else args.host
        print(
            f"embedpool serving {', '.join(m.name for m in catalogue.models)} on {host}:{args.port} "
            f"(ready in {time.monotonic() - t0:.1f}s)",
            flush=True,
        )
        if args.http_port:
            print(f"OpenAI-compatible HTTP on http://{host}:{args.http_port}/v1/embeddings", flush=True)
        if args.ray_grpc_port:
            print(f"also through Ray's gRPC proxy on port {args.ray_grpc_port}", flush=True)
        stop.wait()
        print("draining...", flush=True)
    finally:
        serve.shutdown()  # type: ignore[no-untyped-call]  # ray.serve.shutdown is unannotated
        if started_ray:
            ray.shutdown()
    print("stopped", flush=True)
    return 0
