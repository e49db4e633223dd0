"""Domain errors of the pool, each naming the status a caller gets.

Model code raises these with a message a person can act on; every front turns them
into its own statuses through one adapter (fronts/outcome.py). `status` is the name
of a canonical gRPC code, a plain string here so that the model layer imports no grpc.
They must stay picklable, since they cross Ray actor boundaries.
"""

from __future__ import annotations

# A status message travels percent-encoded in a header (up to 12 bytes per character), and
# gRPC clients drop headers over 8-16 KiB: longer messages are cut, so the caller gets the code.
MAX_MESSAGE_CHARS = 512


def clip_message(message: str) -> str:
    if len(message) <= MAX_MESSAGE_CHARS:
        return message
    return message[: MAX_MESSAGE_CHARS - 40] + f"... ({len(message)} characters, cut)"


class EmbedpoolError(Exception):
    """Base class: an error the caller should see with its message."""

    status: str = "INTERNAL"

    def __init__(self, message: str) -> None:
        message = clip_message(message)
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type[EmbedpoolError], tuple[str]]:
        return (type(self), (self.message,))


class InvalidArgument(EmbedpoolError):
    status = "INVALID_ARGUMENT"


class NotFound(EmbedpoolError):
    status = "NOT_FOUND"


class Overloaded(EmbedpoolError):
    status = "RESOURCE_EXHAUSTED"


class MessageTooLarge(EmbedpoolError):
    """A message over limits.max_message_bytes (gRPC's own code and wording; never retried)."""

    status = "RESOURCE_EXHAUSTED"


class Unavailable(EmbedpoolError):
    status = "UNAVAILABLE"


class DeadlineExceeded(EmbedpoolError):
    status = "DEADLINE_EXCEEDED"


class Cancelled(EmbedpoolError):
    """The caller went away before its answer (an HTTP client that closed its connection)."""

    status = "CANCELLED"


class Unauthenticated(EmbedpoolError):
    status = "UNAUTHENTICATED"


class ConfigError(ValueError):
    """A catalogue or startup setting is wrong; raised before serving starts."""
