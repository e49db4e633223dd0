"""The exceptions the client raises, one class per kind of failure.

Every error the client raises derives from :class:`EmbedpoolError`, so one
``except EmbedpoolError`` catches them all. A failed RPC is raised as the class
its gRPC status code maps to (see :func:`from_rpc_error`), with the server's
message as ``str(exc)`` and the original :class:`grpc.RpcError` as
``exc.__cause__``::

    EmbedpoolError                  any other code (INTERNAL, UNIMPLEMENTED, CANCELLED, ...)
    ├── InvalidInputError           INVALID_ARGUMENT, OUT_OF_RANGE, FAILED_PRECONDITION
    │                               (also a ValueError; raised for bad local arguments too)
    ├── ModelNotFoundError          NOT_FOUND
    ├── OverloadedError             RESOURCE_EXHAUSTED (retried first), except gRPC's
    │                               "message larger than max", an InvalidInputError
    ├── PoolUnavailableError        UNAVAILABLE (retried first)
    ├── DeadlineExceededError       DEADLINE_EXCEEDED, or the client's own deadline ran out
    └── AuthenticationError         UNAUTHENTICATED, PERMISSION_DENIED
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

__all__ = [
    "AuthenticationError",
    "DeadlineExceededError",
    "EmbedpoolError",
    "InvalidInputError",
    "ModelNotFoundError",
    "OverloadedError",
    "PoolUnavailableError",
    "error_class_for",
    "from_rpc_error",
]


class EmbedpoolError(Exception):
    """Base class of every error the client raises.

    ``code`` is the gRPC status code of the failed call (None for an error
    found by the client before any call), ``details`` the server's message,
    which is also ``str(exc)``.
    """

    def __init__(self, details: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(details)
        self.details = details
        self.code = code

    def __reduce__(self) -> tuple[type[EmbedpoolError], tuple[str, grpc.StatusCode | None]]:
        return (type(self), (self.details, self.code))

    def __repr__(self) -> str:
        code = self.code.name if self.code is not None else None
        return f"{type(self).__name__}({self.details!r}, code={code})"


class InvalidInputError(EmbedpoolError, ValueError):
    """The request was rejected as wrong: fix the input, retrying will not help.

    Raised for INVALID_ARGUMENT, OUT_OF_RANGE and FAILED_PRECONDITION (an empty
    text, an over-long one with ``truncate=False``, too many dimensions, ...),
    and for arguments the client itself rejects before calling (code None).
    """


class ModelNotFoundError(EmbedpoolError):
    """The named model or variant is not served by the pool (NOT_FOUND)."""


class OverloadedError(EmbedpoolError):
    """The pool is saturated (RESOURCE_EXHAUSTED); raised once retries are spent."""


class PoolUnavailableError(EmbedpoolError):
    """The pool cannot be reached or is not ready (UNAVAILABLE); raised once retries are spent."""


class DeadlineExceededError(EmbedpoolError):
    """The call's overall deadline ran out (``timeout``), retries included."""


class AuthenticationError(EmbedpoolError):
    """The token is missing, wrong, or not allowed (UNAUTHENTICATED, PERMISSION_DENIED)."""


_CLASS_BY_CODE: Mapping[grpc.StatusCode, type[EmbedpoolError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidInputError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidInputError,
    grpc.StatusCode.NOT_FOUND: ModelNotFoundError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: OverloadedError,
    grpc.StatusCode.UNAVAILABLE: PoolUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: AuthenticationError,
}


def error_class_for(code: grpc.StatusCode | None) -> type[EmbedpoolError]:
    """The exception class for a gRPC status code (EmbedpoolError for unmapped codes)."""
    if code is None:
        return EmbedpoolError
    return _CLASS_BY_CODE.get(code, EmbedpoolError)


def rpc_error_code(err: grpc.RpcError) -> grpc.StatusCode | None:
    """The status code of a failed call, sync or asyncio (None if it has none)."""
    code = getattr(err, "code", None)
    if not callable(code):
        return None
    value = code()
    return value if isinstance(value, grpc.StatusCode) else None


def rpc_error_details(err: grpc.RpcError) -> str:
    """The server's message of a failed call, or a fallback naming the error."""
    details = getattr(err, "details", None)
    value = details() if callable(details) else None
    if isinstance(value, str) and value:
        return value
    code = rpc_error_code(err)
    return code.name if code is not None else repr(err)


def is_message_size_error(code: grpc.StatusCode | None, details: str) -> bool:
    """gRPC's own "message larger than max" failure, which it reports as RESOURCE_EXHAUSTED.

    Unlike an overloaded pool it fails the same way every time, so it is not
    retried and is raised as InvalidInputError (send fewer inputs per call,
    or raise ``max_message_bytes``).
    """
    return code == grpc.StatusCode.RESOURCE_EXHAUSTED and "message larger than max" in details


def from_rpc_error(err: grpc.RpcError) -> EmbedpoolError:
    """Build the EmbedpoolError for a failed call; the caller raises it ``from err``.

    ``str()`` of the result is the server's message; ``.code`` its status code.
    """
    code = rpc_error_code(err)
    details = rpc_error_details(err)
    if is_message_size_error(code, details):
        return InvalidInputError(details, code)
    return error_class_for(code)(details, code)
