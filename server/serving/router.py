"""The Router: the pool's single ingress deployment.

It serves the gRPC service twice over one RouterCore: on its own port (the
fast path, fronts/grpc_server.py) and through Ray Serve's gRPC proxy, whose calls
arrive as the methods below, named after the RPCs; and OpenAI's embeddings API over
HTTP on a port of its own (fronts/http_server.py). All turn errors into statuses
through fronts/outcome.py and count every call, tagged by front.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from ray import serve
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle

from embedpool.server import tracing
from embedpool.server.direct.sender import DirectVariantBackend
from embedpool.server.errors import MessageTooLarge
from embedpool.server.fronts import grpc_server
from embedpool.server.fronts.auth import TokenAuth
from embedpool.server.fronts.http_server import HttpServer, start_http_server
from embedpool.server.fronts.outcome import Failure, failure, settle
from embedpool.server.service.core import Call, RouterCore
from embedpool.server.serving import registry
from embedpool.server.serving.handle_backend import RayVariantBackend
from embedpool.server.serving.metrics import RouterMetrics, flush_forever, flush_now
from embedpool.v1 import embedding_service_pb2 as pb

log = logging.getLogger("ray.serve")
T = TypeVar("T")
HEALTH_INTERVAL_S = 5.0
PROXY_FRONT = "ray_proxy"


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=4096)
class Router:
    async def __init__(  # type: ignore[misc]  # Ray Serve awaits an async constructor
        self,
        catalogue: dict[str, Any],
        handles: dict[str, DeploymentHandle[Any]],
        grpc_port: int | None = 50051,
        grpc_host: str = "0.0.0.0",
        max_in_flight: int = 2,
        http_port: int | None = None,
    ) -> None:
        from embedpool.server.config.catalogue import Catalogue

        cat = Catalogue.model_validate(catalogue)
        tracing.configure("router", cat.telemetry.otlp_endpoint, cat.telemetry.sample_ratio)
        backends: dict[str, Any] = {name: RayVariantBackend(name, h) for name, h in handles.items()}
        self.direct: dict[str, DirectVariantBackend] = {}
        if cat.router.direct:
            for model in cat.models:
                for variant in model.variants:
                    name = cat.deployment_name(model.name, variant.name)
                    self.direct[name] = DirectVariantBackend(
                        name, backends[name], variant.batching.max_ongoing_requests
                    )
            backends.update(self.direct)
        self.core = RouterCore(cat, backends, max_in_flight=max_in_flight)
        self.auth = TokenAuth.from_env()
        self.metrics = RouterMetrics()
        self.statuses: dict[str, int] = {}
        self.server: grpc.aio.Server | None = None
        self.health = None
        if grpc_port:
            self.server, self.health = await grpc_server.start_server(
                self.core, grpc_port, host=grpc_host, auth=self.auth, count=self._count
            )
            log.info("embedpool gRPC listening on %s:%s", grpc_host, grpc_port)
        self.http: HttpServer | None = None
        if http_port:
            try:
                self.http = await start_http_server(
                    self.core, http_port, host=grpc_host, auth=self.auth, count=self._count, healthy=self._up
                )
            except Exception:
                if self.server is not None:  # free the gRPC port for the replica Serve starts next
                    await self.server.stop(None)
                raise
            log.info("embedpool HTTP (OpenAI-compatible) listening on %s:%s", grpc_host, http_port)
        self._health_task = asyncio.get_running_loop().create_task(self._watch_health())
        self._discovery_task = asyncio.get_running_loop().create_task(self._watch_replicas())
        self._metrics_task = asyncio.get_running_loop().create_task(flush_forever(self.metrics))

    def _up(self) -> bool:
        """Whether the default model can answer, as the last health watch found it."""
        return bool(self.statuses.get("") == health_pb2.HealthCheckResponse.SERVING)

    def _count(self, call: Call, code: str) -> None:
        self.metrics.request(call.method, call.model, call.variant, code, call.front)

    async def _watch_health(self) -> None:
        while True:
            try:
                up = await self.core.variant_health()
                self.statuses = grpc_server.health_statuses(self.core, up)
                if self.health is not None:
                    await grpc_server.set_health(self.health, self.statuses)
            except Exception:
                log.exception("health check failed")
            await asyncio.sleep(HEALTH_INTERVAL_S)

    async def _watch_replicas(self) -> None:
        """Keep each variant's direct endpoints in step with what its replicas publish."""
        if not self.direct:
            return
        app = serve.get_replica_context().app_name
        while True:
            try:
                entries = await asyncio.to_thread(registry.discover, app)
                for name, backend in self.direct.items():
                    backend.update(e for e in entries if e.deployment == name)
            except Exception:
                log.exception("could not read the replicas' direct endpoints")
            await asyncio.sleep(registry.POLL_S)

    async def __del__(self) -> None:
        """Drain: stop taking calls, let in-flight ones finish (Ray waits up to the graceful timeout)."""
        if not hasattr(self, "_discovery_task"):  # __init__ failed (a port in use): nothing runs
            return
        self._health_task.cancel()
        self._discovery_task.cancel()
        if self.health is not None:
            await self.health.enter_graceful_shutdown()
        await asyncio.gather(
            *([self.server.stop(grace=10)] if self.server is not None else []),
            *([self.http.stop(grace_s=10)] if self.http is not None else []),
        )
        self._metrics_task.cancel()
        flush_now(self.metrics)  # the calls that finished while draining

    # ---- Ray's gRPC proxy path ------------------------------------------

    def _check_size(self, request: Message) -> None:
        """Ray's proxy takes messages up to 2 GiB; hold its callers to the pool's own limit."""
        size, limit = request.ByteSize(), self.core.limits.max_message_bytes
        if size > limit:
            raise MessageTooLarge(f"Received message larger than max ({size} vs. {limit})")

    async def _proxied(
        self,
        method: str,
        ctx: RayServegRPCContext,
        serve: Callable[[Call], Awaitable[T]],
        empty: T,
        request: Message,
    ) -> T:
        metadata = ctx.invocation_metadata()

        async def checked(call: Call) -> T:
            self.auth.check(metadata)
            self._check_size(request)
            return await serve(call)

        outcome = await settle(method, PROXY_FRONT, metadata, self._count, checked)
        if isinstance(outcome, Failure):
            ctx.set_code(outcome.code)
            ctx.set_details(outcome.message)
            ctx.set_trailing_metadata(list(outcome.trailers))
            return empty
        return outcome

    async def Embed(self, request: pb.EmbedRequest, grpc_context: RayServegRPCContext) -> pb.EmbedResponse:
        return await self._proxied(
            "Embed",
            grpc_context,
            lambda call: grpc_server.embed(self.core, request, None, call),
            pb.EmbedResponse(),
            request,
        )

    async def Similarity(
        self, request: pb.SimilarityRequest, grpc_context: RayServegRPCContext
    ) -> pb.SimilarityResponse:
        return await self._proxied(
            "Similarity",
            grpc_context,
            lambda call: self.core.similarity(request, None, call),
            pb.SimilarityResponse(),
            request,
        )

    async def ListModels(
        self, request: pb.ListModelsRequest, grpc_context: RayServegRPCContext
    ) -> pb.ListModelsResponse:
        return await self._proxied(
            "ListModels",
            grpc_context,
            lambda call: self.core.list_models(request),
            pb.ListModelsResponse(),
            request,
        )

    async def GetModel(
        self, request: pb.GetModelRequest, grpc_context: RayServegRPCContext
    ) -> pb.GetModelResponse:
        return await self._proxied(
            "GetModel",
            grpc_context,
            lambda call: self.core.get_model(request, call),
            pb.GetModelResponse(),
            request,
        )

    async def CountTokens(
        self, request: pb.CountTokensRequest, grpc_context: RayServegRPCContext
    ) -> pb.CountTokensResponse:
        return await self._proxied(
            "CountTokens",
            grpc_context,
            lambda call: self.core.count_tokens(request, call),
            pb.CountTokensResponse(),
            request,
        )

    async def EmbedStream(
        self, request_stream: AsyncIterator[pb.EmbedStreamRequest], grpc_context: RayServegRPCContext
    ) -> AsyncIterator[pb.EmbedStreamResponse]:
        def end(exc: Exception) -> None:  # the stream's own status: auth, size, or a failure
            fail = failure(exc, "EmbedStream")
            self._count(Call("EmbedStream", PROXY_FRONT), fail.code.name)
            grpc_context.set_code(fail.code)
            grpc_context.set_details(fail.message)

        try:
            self.auth.check(grpc_context.invocation_metadata())
        except Exception as exc:
            end(exc)
            return

        async def sized() -> AsyncIterator[pb.EmbedStreamRequest]:
            async for msg in request_stream:
                self._check_size(msg)
                yield msg

        try:
            async for request_id, answer, call in self.core.embed_stream(
                grpc_server.stream_requests(sized()), None, PROXY_FRONT
            ):
                response, code = grpc_server.stream_response(request_id, answer)
                self._count(call, code)
                yield response
        except Exception as exc:  # a message over the size limit ends the stream, as gRPC would
            end(exc)

    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> health_pb2.HealthCheckResponse:
        """grpc.health.v1 through Ray's proxy: the same answers as the direct port. Never needs a token."""
        status = self.statuses.get(request.service)
        if status is None:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {request.service!r}; use '', a model or model/variant")
            return health_pb2.HealthCheckResponse()
        return health_pb2.HealthCheckResponse(status=status)
