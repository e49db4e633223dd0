"""Domain errors of the pool, each mapped once to a gRPC status code.

Model code raises these with a message a person can act on; the gRPC layer
turns them into statuses (see grpc_status()). They must stay picklable, since
they cross Ray actor boundaries.
"""

from __future__ import annotations

import grpc

# A status message travels percent-encoded in a header (up to 12 bytes per character), and
# gRPC clients drop headers over 8-16 KiB: longer messages are cut, so the caller gets the code.
MAX_MESSAGE_CHARS = 512


def clip_message(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 40] + f"... ({len(message)} characters, cut)"


class EmbedpoolError(Exception):
    """Base class: an error the caller should see with its message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        message = clip_message(message)
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


class MessageTooLarge(EmbedpoolError):
    """A message over limits.max_message_bytes (gRPC's own code and wording; never retried)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(EmbedpoolError):
    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(EmbedpoolError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Unauthenticated(EmbedpoolError):
    code = grpc.StatusCode.UNAUTHENTICATED


class ConfigError(ValueError):
    """A catalogue or startup setting is wrong; raised before serving starts."""
