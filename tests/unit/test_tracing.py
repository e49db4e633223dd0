"""Traces from the Router's side (server/tracing.py) into a real OTLP receiver on loopback:
the gRPC and HTTP fronts and the real core over a fake model. The replica's spans, across
processes, are in tests/integration/test_tracing.py."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator

import grpc
import httpx
import pytest

from embedpool.server import tracing
from embedpool.server.fronts.http_server import start_http_server
from embedpool.server.fronts.outcome import failure
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.net import free_port
from tests.otlp_receiver import Receiver, one
from tests.unit.fake_backend import FakeBackend, fill_slots, serving

pytestmark = pytest.mark.asyncio(loop_scope="session")
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def traceparent(trace_id: str = CALLER_TRACE, span_id: str = CALLER_SPAN) -> str:
    return f"00-{trace_id}-{span_id}-01"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()
    tracing.configure("router", got.endpoint, 1.0)
    try:
        yield got
    finally:
        tracing.shutdown()
        got.stop()


async def test_one_call_continues_the_callers_trace(receiver: Receiver) -> None:
    async with serving() as (target, _, _), grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        await stub.Embed(pb.EmbedRequest(inputs=["a", "b"]), metadata=[("traceparent", traceparent())])
    tracing.flush()
    spans = receiver.spans(CALLER_TRACE)
    front, queue, batch = (one(spans, n) for n in ("embedpool Embed", "embedpool queue", "embedpool batch"))
    assert front.parent_id == CALLER_SPAN and front.service == "embedpool-router"
    assert front.kind == 2  # SERVER
    attrs = front.attributes
    assert (attrs["embedpool.front"], attrs["embedpool.code"], attrs["embedpool.model"]) == (
        "grpc",
        "OK",
        "fake",
    )
    assert queue.parent_id == front.span_id and queue.attributes["embedpool.queue.outcome"] == "batched"
    assert batch.parent_id == front.span_id and (CALLER_TRACE, front.span_id) in batch.links
    assert (
        batch.attributes["embedpool.batch.texts"] == 2 and batch.attributes["embedpool.batch.requests"] == 1
    )


async def test_the_http_front_continues_a_traceparent_header(receiver: Receiver) -> None:
    async with serving() as (_, core, _):
        port = free_port()
        server = await start_http_server(core, port, host="127.0.0.1")
        try:
            async with httpx.AsyncClient() as http:
                r = await http.post(
                    f"http://127.0.0.1:{port}/v1/embeddings",
                    json={"input": "x"},
                    headers={"traceparent": traceparent()},
                )
            assert r.status_code == 200
        finally:
            await server.stop(1)
    tracing.flush()
    front = one(receiver.spans(CALLER_TRACE), "embedpool Embed")
    assert front.parent_id == CALLER_SPAN and front.attributes["embedpool.front"] == "http"


async def test_two_callers_merged_into_one_batch_are_both_linked(receiver: Receiver) -> None:
    async with (
        serving(FakeBackend(delay=0.3)) as (target, core, _),
        grpc.aio.insecure_channel(target) as channel,
    ):
        blockers = await fill_slots(core)  # the two calls below queue together
        stub = pb_grpc.EmbeddingServiceStub(channel)
        traces = ["1" * 32, "2" * 32]
        await asyncio.gather(
            *(
                stub.Embed(pb.EmbedRequest(inputs=[t]), metadata=[("traceparent", traceparent(t, "a" * 16))])
                for t in traces
            )
        )
        await asyncio.gather(*blockers)
    tracing.flush()
    fronts = [one(receiver.spans(t), "embedpool Embed") for t in traces]
    batches = [
        s
        for s in receiver.spans()
        if s.name == "embedpool batch" and s.attributes["embedpool.batch.requests"] == 2
    ]
    assert len(batches) == 1
    batch = batches[0]
    assert {(f.trace_id, f.span_id) for f in fronts} <= set(batch.links)
    assert batch.trace_id in traces  # it continues the first caller's trace


async def test_a_collector_that_is_down_costs_nothing_and_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tracing.configure("router", f"http://127.0.0.1:{free_port()}", 1.0)
    try:
        with caplog.at_level(logging.WARNING, "embedpool"):
            async with serving() as (target, _, _), grpc.aio.insecure_channel(target) as channel:
                stub = pb_grpc.EmbeddingServiceStub(channel)
                for i in range(3):
                    got = await stub.Embed(pb.EmbedRequest(inputs=[f"t{i}"]), timeout=10)
                    assert len(got.embeddings) == 1
                    await asyncio.to_thread(tracing.flush, 5)
    finally:
        tracing.shutdown()
    warnings = [r for r in caplog.records if "not reaching the OTLP collector" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]


async def test_off_by_default_and_free() -> None:
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        assert name not in os.environ
    assert not tracing.configure("router")
    assert not tracing.on()
    # No span object is made: the helpers hand back one shared no-op context.
    assert tracing.span("x") is tracing.call_span("Embed", "grpc", [("traceparent", traceparent())])
    assert tracing.start("x") is None and tracing.log_ids() == ""


async def test_an_internal_error_logs_its_trace_and_span_ids(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, "embedpool"), tracing.span("embedpool Embed") as span:
        assert span is not None
        failure(RuntimeError("boom"), "Embed")
        ids = span.get_span_context()
    assert f"trace_id={ids.trace_id:032x} span_id={ids.span_id:016x}" in caplog.text
