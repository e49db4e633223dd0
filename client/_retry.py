"""Deadline and retry policy, shared by the sync and asyncio clients.

The policy decides, the clients only sleep: a call loop looks like::

    attempt = Attempt(policy, deadline, "Embed")
    while True:
        timeout = attempt.timeout()              # raises once the deadline is spent
        try:
            return stub.Embed(request, timeout=timeout, metadata=md)
        except grpc.RpcError as err:
            delay = attempt.failed(err)          # raises unless the error is retryable
        time.sleep(delay)                        # or: await asyncio.sleep(delay)
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

import grpc

from .errors import (
    DeadlineExceededError,
    from_rpc_error,
    is_message_size_error,
    rpc_error_code,
    rpc_error_details,
)

__all__ = ["RETRYABLE_CODES", "RETRY_AFTER_KEY", "Attempt", "Deadline", "RetryPolicy"]

#: Only these codes are retried: the request was not served and may succeed later.
RETRYABLE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
#: Trailing metadata key by which the pool may say how long to wait before retrying.
RETRY_AFTER_KEY = "retry-after-ms"
#: Longest computed backoff between attempts, in seconds (a server hint may be longer).
MAX_BACKOFF_S = 2.0


class Deadline:
    """The overall deadline of one public call: ``timeout`` seconds from now, or none."""

    __slots__ = ("_end", "timeout")

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self) -> float | None:
        """Seconds left (may be <= 0), or None without a deadline."""
        return None if self._end is None else self._end - time.monotonic()

    def expired_error(self, what: str) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"{what}: deadline of {self.timeout:g}s exceeded", grpc.StatusCode.DEADLINE_EXCEEDED
        )


@dataclass(frozen=True)
class RetryPolicy:
    """Retry UNAVAILABLE and RESOURCE_EXHAUSTED up to ``retries`` times.

    The wait before retry n (0-based) is ``backoff * 2**n`` capped at
    ``max_backoff``, times a jitter factor in [0.5, 1); a ``retry-after-ms``
    trailing-metadata hint from the server replaces it.
    """

    retries: int = 3
    backoff: float = 0.05
    max_backoff: float = MAX_BACKOFF_S

    def delay(self, retry_index: int, hint: float | None = None) -> float:
        if hint is not None:
            return hint
        base = min(self.max_backoff, self.backoff * 2.0**retry_index)
        return base * (0.5 + random.random() / 2)


def retry_after_hint(err: grpc.RpcError) -> float | None:
    """The server's ``retry-after-ms`` hint in seconds, if the error carries one."""
    trailing = getattr(err, "trailing_metadata", None)
    if not callable(trailing):
        return None
    try:
        pairs = trailing() or ()
    except Exception:  # a call object that has no trailing metadata to give
        return None
    for key, value in pairs:
        if key == RETRY_AFTER_KEY:
            try:
                text = value.decode() if isinstance(value, bytes) else str(value)
                return max(0.0, float(text) / 1000.0)
            except ValueError:
                return None
    return None


class Attempt:
    """Bookkeeping for one RPC's attempts within a call's deadline."""

    __slots__ = ("_deadline", "_method", "_policy", "retries_done")

    def __init__(self, policy: RetryPolicy, deadline: Deadline, method: str) -> None:
        self._policy = policy
        self._deadline = deadline
        self._method = method
        self.retries_done = 0

    def timeout(self) -> float | None:
        """The gRPC timeout for the next attempt: the time left. Raises if none is left."""
        remaining = self._deadline.remaining()
        if remaining is not None and remaining <= 0:
            raise self._deadline.expired_error(self._method)
        return remaining

    def failed(self, err: grpc.RpcError) -> float:
        """Seconds to wait before retrying ``err``; raises the mapped error when not retrying.

        Call it inside the ``except`` block so that the raised error's
        ``__cause__`` is ``err``.
        """
        code = rpc_error_code(err)
        retryable = code in RETRYABLE_CODES and not is_message_size_error(code, rpc_error_details(err))
        if not retryable or self.retries_done >= self._policy.retries:
            raise from_rpc_error(err) from err
        delay = self._policy.delay(self.retries_done, retry_after_hint(err))
        remaining = self._deadline.remaining()
        if remaining is not None and delay >= remaining:
            assert code is not None
            last = f"{code.name}: {rpc_error_details(err)}"
            raise DeadlineExceededError(
                f"{self._method}: deadline of {self._deadline.timeout:g}s exceeded while retrying "
                f"after {self.retries_done + 1} attempt(s); last error: {last}",
                grpc.StatusCode.DEADLINE_EXCEEDED,
            ) from err
        self.retries_done += 1
        return delay
