"""One real local Ray cluster and one pool per test session.

The pool serves tests/integration/catalogue.yaml: the bundled MiniLM on torch,
ONNX (fp32 and dynamic int8) and OpenVINO side by side, plus a custom class.
It listens on loopback: the pool's own port, its HTTP front and Ray's gRPC proxy.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.net import free_port
from tests.otlp_receiver import Receiver

ROOT = Path(__file__).resolve().parents[2]
CATALOGUE = Path(__file__).with_name("catalogue.yaml")
pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start a Ray cluster of their own run first, before the shared pool exists:
    two clusters starting side by side on 2 cores can time out."""
    items.sort(key=lambda item: item.get_closest_marker("own_cluster") is None)


@dataclass
class Pool:
    target: str
    proxy_target: str
    app_name: str
    http_url: str  # the OpenAI-compatible HTTP front, e.g. http://127.0.0.1:PORT
    traces: Receiver  # the OTLP receiver the pool's processes export to

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target)


@pytest.fixture(scope="session")
def otlp_receiver() -> Iterator[Receiver]:
    """A real OTLP receiver for the session's pool. The pool samples no new trace (ratio 0),
    so only calls that arrive with a sampled traceparent are recorded."""
    receiver = Receiver()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def pool(otlp_receiver: Receiver) -> Iterator[Pool]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import ray
    from ray import serve
    from ray.serve.config import gRPCOptions

    from embedpool.server.config.catalogue import load_catalogue
    from embedpool.server.serving.app import APP_NAME, GRPC_SERVICER_FUNCTIONS, NODE_ENV, SERVING_ENV, build

    for key, value in NODE_ENV.items():  # as `embedpool serve` starts its node
        os.environ.setdefault(key, value)
    port, proxy_port, http_port = free_port(), free_port(), free_port()
    ray.init(
        address="local",
        num_cpus=8,  # logical: lets the side-by-side variants fit; the machine has 2 cores
        include_dashboard=False,
        logging_level="WARNING",
        namespace="serve",
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", **SERVING_ENV}},
        # The request counter is read back by tests (pool_metrics.py): report it every second.
        _system_config={"metrics_report_interval_ms": 1000},
    )
    try:
        serve.start(
            proxy_location="HeadOnly",
            http_options={"host": "127.0.0.1", "port": free_port()},
            grpc_options=gRPCOptions(port=proxy_port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS),
        )
        catalogue = load_catalogue(CATALOGUE)
        telemetry = catalogue.telemetry.model_copy(
            update={"otlp_endpoint": otlp_receiver.endpoint, "sample_ratio": 0.0}
        )
        catalogue = catalogue.model_copy(update={"telemetry": telemetry})
        app = build(catalogue, grpc_port=port, grpc_host="127.0.0.1", http_port=http_port)
        serve.run(
            app, name=APP_NAME, route_prefix=f"/{APP_NAME}", logging_config={"enable_access_log": False}
        )
        pool = Pool(
            f"127.0.0.1:{port}",
            f"127.0.0.1:{proxy_port}",
            APP_NAME,
            f"http://127.0.0.1:{http_port}",
            otlp_receiver,
        )
        grpc.channel_ready_future(pool.channel()).result(timeout=60)
        yield pool
    finally:
        serve.shutdown()
        ray.shutdown()


@dataclass
class AuthFront:
    target: str  # gRPC
    http_url: str
    token: str


@pytest.fixture(scope="session")
def auth_front(pool: Pool) -> Iterator[AuthFront]:
    """The pool's gRPC and HTTP fronts with bearer auth on, over the live replicas: a RouterCore
    in this process on its own loop, reaching the session's replicas through Ray handles."""
    from ray import serve

    from embedpool.server.config.catalogue import load_catalogue
    from embedpool.server.fronts import grpc_server as grpc_front
    from embedpool.server.fronts.auth import TokenAuth
    from embedpool.server.fronts.http_server import start_http_server
    from embedpool.server.service.core import RouterCore
    from embedpool.server.serving.handle_backend import RayVariantBackend

    token = "auth-front-token"
    catalogue = load_catalogue(CATALOGUE)
    names = [catalogue.deployment_name(m.name, v.name) for m in catalogue.models for v in m.variants]
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port, http_port = free_port(), free_port()

    async def start() -> tuple[Any, Any]:
        backends: dict[str, Any] = {
            n: RayVariantBackend(n, serve.get_deployment_handle(n, pool.app_name)) for n in names
        }
        core = RouterCore(catalogue, backends)
        auth = TokenAuth([token])
        server, _ = await grpc_front.start_server(core, port, host="127.0.0.1", auth=auth)
        http = await start_http_server(core, http_port, host="127.0.0.1", auth=auth)
        return server, http

    server, http = asyncio.run_coroutine_threadsafe(start(), loop).result(60)
    try:
        yield AuthFront(f"127.0.0.1:{port}", f"http://127.0.0.1:{http_port}", token)
    finally:

        async def stop() -> None:
            await http.stop(5)
            await server.stop(None)

        asyncio.run_coroutine_threadsafe(stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
