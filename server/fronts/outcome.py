"""The one adapter from a call's outcome to what a front sends and counts.

Every front (the pool's gRPC port, Ray's gRPC proxy path, the HTTP front) turns an
exception into its status here: the gRPC code and message, the trailers (a retry hint
on overload), the HTTP status and OpenAI error type, and the code name the request
counter is tagged with. An exception that is not the pool's own becomes INTERNAL with
its traceback logged, on every front alike.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import grpc

from embedpool.server import tracing
from embedpool.server.errors import EmbedpoolError, MessageTooLarge, Overloaded, clip_message
from embedpool.server.service.core import Call

log = logging.getLogger("embedpool")
RETRY_AFTER_MS = 100
T = TypeVar("T")

# gRPC code -> (HTTP status, OpenAI error type). 413 for MessageTooLarge is by class below.
_HTTP: dict[grpc.StatusCode, tuple[int, str]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, "invalid_request_error"),
    grpc.StatusCode.UNAUTHENTICATED: (401, "authentication_error"),
    grpc.StatusCode.NOT_FOUND: (404, "not_found_error"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, "rate_limit_error"),
    grpc.StatusCode.UNAVAILABLE: (503, "service_unavailable_error"),
    grpc.StatusCode.DEADLINE_EXCEEDED: (504, "timeout_error"),
    grpc.StatusCode.CANCELLED: (499, "cancelled_error"),
    grpc.StatusCode.INTERNAL: (500, "server_error"),
}

# Counts a finished call: the call's tags and its status code name ("OK" on success).
CountFn = Callable[[Call, str], None]


@dataclass(frozen=True, slots=True)
class Failure:
    """How every front reports one exception."""

    code: grpc.StatusCode
    message: str
    retry_after_ms: int | None = None
    too_large: bool = False
    # The request field at fault, where the refusal names one (the HTTP envelope's `param`).
    param: str | None = None

    @property
    def trailers(self) -> tuple[tuple[str, str], ...]:
        """gRPC trailing metadata: the retry hint the Python client's backoff reads."""
        return () if self.retry_after_ms is None else (("retry-after-ms", str(self.retry_after_ms)),)

    @property
    def http_status(self) -> int:
        return 413 if self.too_large else _HTTP.get(self.code, (500, "server_error"))[0]

    @property
    def error_type(self) -> str:
        """OpenAI's `error.type` for the HTTP front's envelope."""
        return "invalid_request_error" if self.too_large else _HTTP.get(self.code, (500, "server_error"))[1]

    @property
    def http_headers(self) -> dict[str, str]:
        """What an HTTP answer carries beside the envelope: the retry hint (Retry-After in
        whole seconds, and the milliseconds the OpenAI SDKs read first), the auth scheme."""
        if self.retry_after_ms is not None:
            seconds = max(1, -(-self.retry_after_ms // 1000))
            return {"retry-after": str(seconds), "retry-after-ms": str(self.retry_after_ms)}
        if self.code == grpc.StatusCode.UNAUTHENTICATED:
            return {"www-authenticate": "Bearer"}
        return {}

    def openai_error(self) -> dict[str, dict[str, str | None]]:
        """OpenAI's error envelope. `code` is the pool's status name in lower case."""
        code = "request_too_large" if self.too_large else self.code.name.lower()
        return {
            "error": {"message": self.message, "type": self.error_type, "param": self.param, "code": code}
        }

    @property
    def code_number(self) -> int:
        """The numeric code, as carried by EmbedStream's per-request ErrorStatus."""
        number: int = self.code.value[0]
        return number


def failure(exc: BaseException, what: str) -> Failure:
    """The status for `exc`, raised while serving `what` (a method name, for the log)."""
    if isinstance(exc, EmbedpoolError):
        return Failure(
            code=grpc.StatusCode[exc.status],
            message=exc.message,
            retry_after_ms=RETRY_AFTER_MS if isinstance(exc, Overloaded) else None,
            too_large=isinstance(exc, MessageTooLarge),
            param=getattr(exc, "param", None),
        )
    log.error("%s failed%s", what, tracing.log_ids(), exc_info=exc)
    return Failure(grpc.StatusCode.INTERNAL, clip_message(f"internal error: {type(exc).__name__}: {exc}"))


def no_count(call: Call, code: str) -> None:
    return None


async def settle(
    method: str,
    front: str,
    carrier: Iterable[tuple[str, str | bytes]],
    count: CountFn,
    serve: Callable[[Call], Awaitable[T]],
) -> T | Failure:
    """One call as every front serves it: under its trace span (continuing the caller's
    traceparent from `carrier`, its metadata or headers), counted with its code. A failure is
    returned, not raised, for the front to send in its own format."""
    call = Call(method, front)
    with tracing.call_span(method, front, carrier) as span:
        try:
            result = await serve(call)
        except Exception as exc:
            fail = failure(exc, method)
            count(call, fail.code.name)
            tracing.end_call(span, call.model, call.variant, fail.code.name)
            return fail
        count(call, "OK")
        tracing.end_call(span, call.model, call.variant, "OK")
        return result
