"""A replica's end of the direct channel: one unary method that embeds a Router batch.

It runs on the replica's event loop and calls the same batched `embed` as Serve's
handle path, so batches from both meet in one forward pass. Callers must send the
replica's random token (published with its address); the body is JSON, never pickle.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from embedpool.server.direct import wire as replica_wire
from embedpool.server.direct.sender import CHANNEL_OPTIONS
from embedpool.server.errors import EmbedpoolError
from embedpool.server.types import EmbedItem, EmbedOutput

EmbedFn = Callable[[list[EmbedItem]], Awaitable[list[EmbedOutput | EmbedpoolError]]]


class DirectServer:
    def __init__(self, embed: EmbedFn) -> None:
        self._embed = embed
        self.token = secrets.token_urlsafe(24)
        self.ongoing = 0  # batches being embedded, for autoscaling
        self.address = ""
        self._server: grpc.aio.Server | None = None

    async def start(self, host: str) -> str:
        """Listen on an ephemeral port of `host` (the node's IP); returns host:port."""
        server = grpc.aio.server(options=CHANNEL_OPTIONS)
        handler = grpc.unary_unary_rpc_method_handler(self._handle)
        method = replica_wire.EMBED_METHOD.rsplit("/", 1)[1]
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(replica_wire.SERVICE, {method: handler}),)
        )
        port = server.add_insecure_port(f"{host}:0")
        await server.start()
        self._server = server
        self.address = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
        return self.address

    async def stop(self, grace: float) -> None:
        if self._server is not None:
            await self._server.stop(grace)

    async def _handle(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        sent = dict(context.invocation_metadata() or ()).get(replica_wire.TOKEN_HEADER, "")
        if not isinstance(sent, str) or not hmac.compare_digest(sent.encode(), self.token.encode()):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, "not a Router of this pool")
        try:
            items = replica_wire.decode_items(request)
        except replica_wire.WireError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        self.ongoing += 1
        try:
            results = await self._embed(items)
        finally:
            self.ongoing -= 1
        return replica_wire.encode_results(results)
