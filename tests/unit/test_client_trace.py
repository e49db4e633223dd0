"""The thin client carries the caller's OpenTelemetry span to the pool (client/_trace.py)."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from embedpool import AsyncEmbeddingClient, EmbeddingClient
from tests.unit.conftest import Pool

TRACER = TracerProvider().get_tracer("caller")  # a local provider: the global one is left alone


def test_a_call_inside_a_span_carries_its_traceparent(pool: Pool) -> None:
    with EmbeddingClient(target=pool.target, timeout=10) as client:
        client.get_text_embedding("outside any span")
        with TRACER.start_as_current_span("caller's work") as span:
            client.get_text_embedding("inside the caller's span")
    outside, inside = pool.metadata
    assert "traceparent" not in outside
    ctx = span.get_span_context()
    assert inside["traceparent"].split("-")[1:3] == [f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"]


async def test_the_async_client_too(pool: Pool) -> None:
    async with AsyncEmbeddingClient(target=pool.target, timeout=10) as client:
        with TRACER.start_as_current_span("caller's work") as span:
            await client.aget_text_embedding("x")
    ctx = span.get_span_context()
    assert pool.metadata[-1]["traceparent"].split("-")[1:3] == [f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"]
