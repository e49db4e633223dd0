"""The caller's OpenTelemetry trace, continued by the pool.

When `opentelemetry-api` is installed and the caller is inside a span, each call carries the
span's W3C `traceparent` (and any baggage) in its metadata, so the pool's spans join the
caller's trace. Without the package, or outside a span, nothing is added. The client does
not depend on OpenTelemetry.
"""

from __future__ import annotations

from typing import Any

Metadata = tuple[tuple[str, str], ...]

try:
    from opentelemetry import propagate as _propagate
except ImportError:  # pragma: no cover - the thin client without OpenTelemetry
    _propagate: Any = None  # type: ignore[no-redef]


def with_trace(metadata: Metadata) -> Metadata:
    """The call's metadata, plus the current span's traceparent when there is one."""
    if _propagate is None:
        return metadata
    carrier: dict[str, str] = {}
    _propagate.inject(carrier)
    if not carrier:
        return metadata
    return (*metadata, *carrier.items())
