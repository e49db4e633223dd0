"""INVALID_ARGUMENT for request bytes that do not parse, on the pool's own port.

grpc.aio parses a request before any handler runs and answers a parse failure with
UNKNOWN "Unexpected <class 'DecodeError'>", which reads like a server bug. This
interceptor gives each method a deserializer that marks such bytes instead of
raising, and a handler that refuses them with INVALID_ARGUMENT naming the message
type; the server goes on as before.

On EmbedStream the frames are read by the core's reader task while the handler task
writes answers. The refusal is raised in the reader and sent by the handler task only:
`context.abort` from the reader while an answer is being written fails in gRPC core
(GRPC_CALL_ERROR_TOO_MANY_OPERATIONS: two send batches at once), the status
is never sent, and the client waited for its deadline. Answers sent before stay sent.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError


class _Malformed:
    def __init__(self, error: DecodeError) -> None:
        self.error = error


class MalformedFrame(Exception):
    """A stream frame that did not parse, raised where the frames are read (the core's
    reader task) and turned into the call's status by the handler task."""

    def __init__(self, bad: _Malformed) -> None:
        super().__init__(str(bad.error))
        self.bad = bad


def _safe(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except DecodeError as exc:
            return _Malformed(exc)

    return parse


async def _refuse(context: Any, bad: _Malformed) -> None:
    await context.abort(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"the request is not a valid protobuf message ({bad.error}); check that the client's "
        "generated code matches proto/embedpool/v1 and that strings are UTF-8",
    )


Context = grpc.aio.ServicerContext[Any, Any]


class RejectMalformedRequests(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self, service: str) -> None:
        self.prefix = f"/{service}/"
        self._wrapped: dict[str, Any] = {}  # method -> its handler with the safe deserializer

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        details: grpc.HandlerCallDetails,
    ) -> Any:
        handler = await continuation(details)
        # Only the pool's own service: its handlers are plain coroutines and async generators.
        if handler is None or not details.method.startswith(self.prefix):
            return handler
        if details.method not in self._wrapped:
            self._wrapped[details.method] = self._wrap(handler)
        return self._wrapped[details.method]

    @staticmethod
    def _wrap(handler: Any) -> Any:
        parse, serialize = _safe(handler.request_deserializer), handler.response_serializer
        if handler.unary_unary is not None:
            inner_unary = handler.unary_unary

            async def unary(request: Any, context: Context) -> Any:
                if isinstance(request, _Malformed):
                    await _refuse(context, request)
                return await inner_unary(request, context)

            return grpc.unary_unary_rpc_method_handler(unary, parse, serialize)
        if handler.stream_stream is not None:
            inner_stream = handler.stream_stream

            async def checked(requests: AsyncIterator[Any]) -> AsyncIterator[Any]:
                async for request in requests:
                    if isinstance(request, _Malformed):
                        raise MalformedFrame(request)
                    yield request

            async def stream(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
                try:
                    async for response in inner_stream(checked(requests), context):
                        yield response
                except MalformedFrame as exc:  # here, in the task that writes the answers
                    await _refuse(context, exc.bad)

            return grpc.stream_stream_rpc_method_handler(stream, parse, serialize)
        return handler
