"""Domain errors of the pool, each mapped once to a gRPC status code.

Model code raises these with a message a person can act on; the gRPC layer
turns them into statuses (see grpc_status()). They must stay picklable, since
they cross Ray actor boundaries.
"""

from __future__ import annotations

import grpc


class EmbedpoolError(Exception):
    """Base class: an error the caller should see with its message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type[EmbedpoolError], tuple[str]]:
        return (type(self), (self.message,))


class InvalidArgument(EmbedpoolError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(EmbedpoolError):
    code = grpc.StatusCode.NOT_FOUND


class Overloaded(EmbedpoolError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(EmbedpoolError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(EmbedpoolError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(EmbedpoolError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ConfigError(ValueError):
    """A catalogue or startup setting is wrong; raised before serving starts."""
