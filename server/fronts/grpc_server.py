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
from grpc_health.v1.health import aio as health_aio  # type: ignore[attr-defined]  # grpc-stubs lack .aio
from grpc_reflection.v1alpha import reflection

from embedpool.server.errors import InvalidArgument
from embedpool.server.fronts.auth import TokenAuth
from embedpool.server.fronts.grpc_decode import RejectMalformedRequests
from embedpool.server.fronts.outcome import CountFn, Failure, failure, no_count, settle
from embedpool.server.service import messages as convert
from embedpool.server.service.core import Call, RouterCore, StreamRequest
from embedpool.server.types import EmbedAnswer, EmbedRequest
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc

log = logging.getLogger("embedpool")
SERVICE = pb.DESCRIPTOR.services_by_name["EmbeddingService"].full_name
FRONT = "grpc"
T = TypeVar("T")


def _deadline(context: grpc.aio.ServicerContext[Any, Any]) -> float | None:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


async def embed(
    core: RouterCore, request: pb.EmbedRequest, deadline: float | None, call: Call
) -> pb.EmbedResponse:
    """One Embed call: the message in the pool's names, the core's answer on the wire."""
    return convert.embed_response(await core.embed(convert.embed_request(request), deadline, call))


async def stream_requests(messages: AsyncIterator[pb.EmbedStreamRequest]) -> AsyncIterator[StreamRequest]:
    """An EmbedStream's messages as the core takes them: a message that does not convert is
    that request's answer (its error), not the stream's."""
    async for msg in messages:
        request: EmbedRequest | Exception
        try:
            if not msg.HasField("request"):
                raise InvalidArgument("EmbedStreamRequest.request is unset")
            request = convert.embed_request(msg.request)
        except InvalidArgument as exc:
            request = exc
        yield msg.request_id, request


def stream_response(request_id: str, answer: EmbedAnswer | Exception) -> tuple[pb.EmbedStreamResponse, str]:
    """One EmbedStream answer on the wire (the response, or the error status that ended it)
    and its code name for the request counter. Shared by the pool's port and Ray's proxy."""
    if isinstance(answer, EmbedAnswer):
        return pb.EmbedStreamResponse(request_id=request_id, response=convert.embed_response(answer)), "OK"
    fail = failure(answer, "EmbedStream request")
    error = pb.ErrorStatus(code=fail.code_number, message=fail.message)
    return pb.EmbedStreamResponse(request_id=request_id, error=error), fail.code.name


class EmbeddingServicer(pb_grpc.EmbeddingServiceServicer):
    def __init__(self, core: RouterCore, auth: TokenAuth, count: CountFn) -> None:
        self.core = core
        self.auth = auth
        self.count = count

    async def _unary(
        self,
        method: str,
        context: grpc.aio.ServicerContext[Any, Any],
        serve: Callable[[Call], Awaitable[T]],
    ) -> T:
        metadata = context.invocation_metadata() or ()

        async def checked(call: Call) -> T:
            self.auth.check(metadata)
            return await serve(call)

        outcome = await settle(method, FRONT, metadata, self.count, checked)
        if isinstance(outcome, Failure):
            await context.abort(outcome.code, outcome.message, trailing_metadata=outcome.trailers)
            raise AssertionError("abort raises")
        return outcome

    async def Embed(self, request: pb.EmbedRequest, context: Any) -> pb.EmbedResponse:
        return await self._unary(
            "Embed", context, lambda call: embed(self.core, request, _deadline(context), call)
        )

    async def Similarity(self, request: pb.SimilarityRequest, context: Any) -> pb.SimilarityResponse:
        return await self._unary(
            "Similarity", context, lambda call: self.core.similarity(request, _deadline(context), call)
        )

    async def ListModels(self, request: pb.ListModelsRequest, context: Any) -> pb.ListModelsResponse:
        return await self._unary("ListModels", context, lambda call: self.core.list_models(request))

    async def GetModel(self, request: pb.GetModelRequest, context: Any) -> pb.GetModelResponse:
        return await self._unary("GetModel", context, lambda call: self.core.get_model(request, call))

    async def CountTokens(self, request: pb.CountTokensRequest, context: Any) -> pb.CountTokensResponse:
        return await self._unary("CountTokens", context, lambda call: self.core.count_tokens(request, call))

    async def EmbedStream(
        self, request_iterator: AsyncIterator[pb.EmbedStreamRequest], context: Any
    ) -> AsyncIterator[pb.EmbedStreamResponse]:
        try:
            self.auth.check(context.invocation_metadata() or ())
        except Exception as exc:
            fail = failure(exc, "EmbedStream")
            self.count(Call("EmbedStream", FRONT), fail.code.name)
            await context.abort(fail.code, fail.message)
        async for request_id, answer, call in self.core.embed_stream(
            stream_requests(request_iterator), _deadline(context), FRONT
        ):
            response, code = stream_response(request_id, answer)
            self.count(call, code)  # each request of a stream with its own tags and code
            yield response


async def start_server(
    core: RouterCore,
    port: int,
    *,
    host: str = "0.0.0.0",
    auth: TokenAuth | None = None,
    count: CountFn = no_count,
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
        EmbeddingServicer(core, auth or TokenAuth([]), count), server
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
