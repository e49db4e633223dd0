"""Network helpers shared by unit and integration tests."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A TCP port free on loopback right now (tests bind servers to 127.0.0.1 only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
