"""The OpenAI-compatible HTTP front, run inside each Router replica beside the gRPC server.

Starlette on uvicorn (both already in Ray Serve's dependencies); the bodies are pydantic
models (openai_bodies.py). After parsing, a call takes the gRPC path: the same RouterCore,
so HTTP and gRPC requests for a variant join the same batches, under the same limits, and
every failure becomes its status through the one adapter (outcome.py), in OpenAI's envelope.

Routes: POST /v1/embeddings, GET /v1/models, GET /v1/models/{id}, GET /health.
A client that disconnects while its call waits cancels its queued work. A deadline can be
given in the `x-timeout-ms` header (OpenAI's API has none).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive

from embedpool.server.errors import Cancelled, MessageTooLarge, NotFound
from embedpool.server.fronts.auth import TokenAuth
from embedpool.server.fronts.openai_bodies import (
    BadBody,
    embeddings_json,
    model_entry,
    model_list,
    parse_embeddings,
)
from embedpool.server.fronts.outcome import CountFn, Failure, no_count, settle
from embedpool.server.service.core import Call, RouterCore

FRONT = "http"
TIMEOUT_HEADER = "x-timeout-ms"
# Whether the default model can answer now (the Router's health watch keeps it).
HealthFn = Callable[[], bool]


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    return Response(data, status, headers, media_type="application/json")


class HttpFront:
    """The routes over one RouterCore; `app` is the ASGI application."""

    def __init__(self, core: RouterCore, auth: TokenAuth, count: CountFn, healthy: HealthFn) -> None:
        self.core = core
        self.auth = auth
        self.count = count
        self.healthy = healthy
        self.app = Starlette(
            routes=[
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/models/{name:path}", self.model, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
            ],
            exception_handlers={HTTPException: _no_route},
        )

    async def _answer(
        self, method: str, request: Request, serve: Callable[[Call], Awaitable[Response]]
    ) -> Response:
        headers = request.headers.items()

        async def checked(call: Call) -> Response:
            self.auth.check(headers)
            return await serve(call)

        outcome = await settle(method, FRONT, headers, self.count, checked)
        if isinstance(outcome, Failure):
            return _json(outcome.openai_error(), outcome.http_status, outcome.http_headers)
        return outcome

    async def embeddings(self, request: Request) -> Response:
        async def serve(call: Call) -> Response:
            body = parse_embeddings(await self._body(request))
            deadline = _deadline(request)
            work = asyncio.ensure_future(self.core.embed(body.request(), deadline, call))
            answer = await _unless_disconnected(work, request.receive)
            pieces = []
            for piece in embeddings_json(answer, body.model):
                pieces.append(piece)
                await asyncio.sleep(0)  # a big float answer must not stall the other calls
            return Response(b"".join(pieces), media_type="application/json")

        return await self._answer("Embed", request, serve)

    async def models(self, request: Request) -> Response:
        async def serve(call: Call) -> Response:
            return _json(model_list(list(self._model_names())))

        return await self._answer("ListModels", request, serve)

    async def model(self, request: Request) -> Response:
        name = request.path_params["name"]

        async def serve(call: Call) -> Response:
            if name not in set(self._model_names()):
                raise NotFound(f"no model or model/variant {name[:256]!r} here; GET /v1/models lists them")
            call.model, _, call.variant = name.partition("/")
            return _json(model_entry(name))

        return await self._answer("GetModel", request, serve)

    async def health(self, request: Request) -> Response:
        """For load balancers: 200 while the default model can answer, 503 otherwise. No token."""
        if self.healthy():
            return _json({"status": "ok", "model": self.core.catalogue.default_model_name})
        return _json({"status": "unavailable", "model": self.core.catalogue.default_model_name}, 503)

    def _model_names(self) -> Iterator[str]:
        for model in self.core.catalogue.models:
            yield model.name
            for variant in model.variants:
                yield f"{model.name}/{variant.name}"

    async def _body(self, request: Request) -> bytes:
        """The body, refused with 413 past the pool's message limit before it is all read."""
        limit = self.core.limits.max_message_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise MessageTooLarge(f"the body is {declared} bytes; the limit is {limit}")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise MessageTooLarge(f"the body is over {limit} bytes, the limit")
            chunks.append(chunk)
        return b"".join(chunks)


ROUTES = "POST /v1/embeddings, GET /v1/models, GET /v1/models/{id}, GET /health"


async def _no_route(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405, in OpenAI's envelope like every other answer."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    where = f"{request.method} {request.url.path}"
    if status == 405:
        message, kind, code = (
            f"{where}: method not allowed; the routes: {ROUTES}",
            "invalid_request_error",
            "method_not_allowed",
        )
    else:
        message, kind, code = f"{where}: no such route; the routes: {ROUTES}", "not_found_error", "not_found"
    return _json({"error": {"message": message, "type": kind, "param": None, "code": code}}, status)


def _deadline(request: Request) -> float | None:
    raw = request.headers.get(TIMEOUT_HEADER)
    if raw is None:
        return None
    try:
        ms = float(raw)
    except ValueError:
        raise BadBody(f"{TIMEOUT_HEADER} must be a number of milliseconds, not {raw[:40]!r}") from None
    if not ms > 0:
        raise BadBody(f"{TIMEOUT_HEADER} must be more than 0 milliseconds")
    return time.monotonic() + ms / 1000


async def _unless_disconnected(work: asyncio.Future[Any], receive: Receive) -> Any:
    """The work's result; if the client goes away first, the work is cancelled (its queued
    batch slot is dropped before it costs a forward pass) and the call ends as CANCELLED."""

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if work not in done:
            work.cancel()
            raise Cancelled("the client closed the connection before the answer")
        return work.result()
    finally:
        watcher.cancel()
        if not work.done():
            work.cancel()


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside a process that owns its signals (a Ray actor, a test): it must not
    take SIGTERM/SIGINT for itself, or the process would outlive its own shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class HttpServer:
    """One uvicorn server on a port shared by every Router replica on the node (SO_REUSEPORT)."""

    def __init__(self, server: uvicorn.Server, task: asyncio.Task[None]) -> None:
        self._server = server
        self._task = task

    async def stop(self, grace_s: float = 10.0) -> None:
        self._server.should_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(self._task), grace_s)
        self._task.cancel()


async def start_http_server(
    core: RouterCore,
    port: int,
    *,
    host: str = "0.0.0.0",
    auth: TokenAuth | None = None,
    count: CountFn = no_count,
    healthy: HealthFn = lambda: True,
) -> HttpServer:
    front = HttpFront(core, auth or TokenAuth([]), count, healthy)
    config = uvicorn.Config(
        front.app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=75,
    )
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"could not bind the HTTP port {host}:{port}: {exc}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    server = _EmbeddedServer(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():  # startup failed: raise what it raised
            task.result()
            raise RuntimeError(f"the HTTP server on {host}:{port} stopped at startup")
        await asyncio.sleep(0.01)
    return HttpServer(server, task)
