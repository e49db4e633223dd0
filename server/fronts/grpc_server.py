"""The pool's own gRPC server, run inside each Router replica.

Clients reach it on one fixed port per node (SO_REUSEPORT lets every Router
replica on a node share it). It skips the Ray proxy hop and carries what the
proxy lacks: grpc.health.v1, reflection, bearer auth, and TLS when given a key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection

from embedpool.server.errors import EmbedpoolError, Overloaded, clip_message
from embedpool.server.fronts.auth import TokenAuth
from embedpool.server.fronts.grpc_decode import RejectMalformedRequests
from embedpool.server.service.core import RESOLVED, RouterCore
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc

log = logging.getLogger("embedpool")
SERVICE = pb.DESCRIPTOR.services_by_name["EmbeddingService"].full_name
RETRY_AFTER_MS = "100"
T = TypeVar("T")


def _deadline(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def error_trailers(exc: EmbedpoolError) -> tuple[tuple[str, str], ...]:
    """A retry hint on overload, read by the Python client's backoff."""
    return (("retry-after-ms", RETRY_AFTER_MS),) if isinstance(exc, Overloaded) else ()


class EmbeddingServicer(pb_grpc.EmbeddingServiceServicer):
    def __init__(self, core: RouterCore, auth: TokenAuth, on_result: Callable[[str, str], None]) -> None:
        self.core = core
        self.auth = auth
        self.on_result = on_result

    async def _unary(
        self, method: str, context: grpc.aio.ServicerContext[Any, Any], call: Callable[[], Awaitable[T]]
    ) -> T:
        try:
            self.auth.check(context.invocation_metadata() or ())
            result = await call()
        except EmbedpoolError as exc:
            self.on_result(method, exc.code.name)
            await context.abort(exc.code, exc.message, trailing_metadata=error_trailers(exc))
            raise  # abort raises; this line is for type checkers
        except Exception as exc:
            log.exception("%s failed", method)
            self.on_result(method, "INTERNAL")
            await context.abort(
                grpc.StatusCode.INTERNAL, clip_message(f"internal error: {type(exc).__name__}: {exc}")
            )
            raise
        self.on_result(method, "OK")
        return result

    async def Embed(self, request: pb.EmbedRequest, context: Any) -> pb.EmbedResponse:
        return await self._unary("Embed", context, lambda: self.core.embed(request, _deadline(context)))

    async def Similarity(self, request: pb.SimilarityRequest, context: Any) -> pb.SimilarityResponse:
        return await self._unary(
            "Similarity", context, lambda: self.core.similarity(request, _deadline(context))
        )

    async def ListModels(self, request: pb.ListModelsRequest, context: Any) -> pb.ListModelsResponse:
        return await self._unary("ListModels", context, lambda: self.core.list_models(request))

    async def GetModel(self, request: pb.GetModelRequest, context: Any) -> pb.GetModelResponse:
        return await self._unary("GetModel", context, lambda: self.core.get_model(request))

    async def CountTokens(self, request: pb.CountTokensRequest, context: Any) -> pb.CountTokensResponse:
        return await self._unary("CountTokens", context, lambda: self.core.count_tokens(request))

    async def EmbedStream(
        self, request_iterator: AsyncIterator[pb.EmbedStreamRequest], context: Any
    ) -> AsyncIterator[pb.EmbedStreamResponse]:
        try:
            self.auth.check(context.invocation_metadata() or ())
        except EmbedpoolError as exc:
            await context.abort(exc.code, exc.message)
        async for response in self.core.embed_stream(request_iterator, _deadline(context)):
            # each stream request resolves in a task of its own: tag from the answer instead
            RESOLVED.set((response.response.model, response.response.variant))
            self.on_result("EmbedStream", "OK" if response.HasField("response") else "ERROR")
            yield response


async def start_server(
    core: RouterCore,
    port: int,
    *,
    host: str = "0.0.0.0",
    auth: TokenAuth | None = None,
    on_result: Callable[[str, str], None] = lambda method, code: None,
    tls_cert_chain: bytes | None = None,
    tls_private_key: bytes | None = None,
) -> tuple[grpc.aio.Server, health_aio.HealthServicer]:
    max_bytes = core.limits.max_message_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_bytes),
            ("grpc.max_send_message_length", max_bytes),
            ("grpc.so_reuseport", 1),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5000),
        ],
        interceptors=[RejectMalformedRequests(SERVICE)],
    )
    pb_grpc.add_EmbeddingServiceServicer_to_server(
        EmbeddingServicer(core, auth or TokenAuth([]), on_result), server
    )
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    reflection.enable_server_reflection(
        (SERVICE, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME), server
    )
    address = f"{host}:{port}"
    if tls_cert_chain and tls_private_key:
        creds = grpc.ssl_server_credentials([(tls_private_key, tls_cert_chain)])
        bound = server.add_secure_port(address, creds)
    else:
        bound = server.add_insecure_port(address)
    if bound == 0:
        raise RuntimeError(f"could not bind the gRPC port {address}")
    await server.start()
    return server, health


def health_statuses(core: RouterCore, up: dict[str, bool]) -> dict[str, int]:
    """Per variant ("model/variant"), per model (any variant up) and overall (the default model up)."""
    serving, not_serving = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
    out: dict[str, int] = {}
    for model in core.catalogue.models:
        up_any = False
        for variant in model.variants:
            ok = up.get(core.catalogue.deployment_name(model.name, variant.name), False)
            up_any = up_any or ok
            out[f"{model.name}/{variant.name}"] = serving if ok else not_serving
        out[model.name] = serving if up_any else not_serving
    out[""] = out[SERVICE] = out[core.catalogue.default_model_name]
    return out


async def set_health(health: health_aio.HealthServicer, statuses: dict[str, int]) -> None:
    for name, status in statuses.items():
        await health.set(name, status)
