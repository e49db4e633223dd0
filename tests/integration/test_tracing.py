"""One Embed call traced across processes: the caller's trace continued by the Router and the
replica, exported by both to the session's OTLP receiver (conftest's `otlp_receiver`)."""

from __future__ import annotations

import secrets
import time

import grpc
import pytest

from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.otlp_receiver import one

from .conftest import Pool

pytestmark = pytest.mark.integration
CHAIN = ["embedpool Embed", "embedpool batch", "embedpool hop", "embedpool replica", "embedpool forward"]


@pytest.mark.parametrize("variant", ["torch-cpu", "onnx-cpu"])
def test_one_call_is_one_trace_from_the_caller_to_the_forward_pass(pool: Pool, variant: str) -> None:
    trace_id, caller = secrets.token_hex(16), secrets.token_hex(8)
    with grpc.insecure_channel(pool.target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        request = pb.EmbedRequest(
            model=pb.ModelSelector(model="all-minilm-l6-v2", variant=variant), inputs=["red planet", "blue"]
        )
        stub.Embed(request, metadata=[("traceparent", f"00-{trace_id}-{caller}-01")], timeout=60)
    spans = pool.traces.wait_for(trace_id, {*CHAIN, "embedpool tokenize", "embedpool postprocess"})
    chain = [one(spans, name) for name in CHAIN]
    # The parent chain: caller -> Router's front -> batch -> hop -> replica -> forward pass.
    parents = [caller] + [s.span_id for s in chain[:-1]]
    assert [s.parent_id for s in chain] == parents, [(s.name, s.parent_id, s.span_id) for s in spans]
    assert {s.service for s in spans} == {"embedpool-router", "embedpool-replica"}
    front, batch, hop, replica, forward = chain
    assert front.attributes["embedpool.variant"] == variant and front.attributes["embedpool.code"] == "OK"
    assert batch.attributes["embedpool.batch.texts"] == 2 and (trace_id, front.span_id) in batch.links
    assert hop.attributes["embedpool.path"] in ("direct", "serve_handle")
    assert replica.attributes["resource"]["embedpool.variant"] == variant
    assert forward.attributes["embedpool.tokens"] > 0 and forward.attributes["embedpool.padded_tokens"] >= 2
    assert one(spans, "embedpool tokenize").parent_id == replica.span_id


def test_a_warm_variant_is_reached_over_the_direct_channel(pool: Pool) -> None:
    """The Router finds the replica's published endpoint (Ray's GCS) and sends batches there, not
    through Serve's handle: a broken channel would fall back silently, so the hop span tells."""
    paths: list[str] = []
    with grpc.insecure_channel(pool.target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        for _ in range(20):  # endpoints are listed within a heartbeat (2 s) and a poll (1 s)
            trace_id = secrets.token_hex(16)
            parent = [("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-01")]
            stub.Embed(pb.EmbedRequest(inputs=["direct?"]), metadata=parent, timeout=60)
            hop = one(pool.traces.wait_for(trace_id, {"embedpool hop"}), "embedpool hop")
            paths.append(str(hop.attributes["embedpool.path"]))
            if paths[-1] == "direct":
                break
            time.sleep(0.5)
    assert paths[-1] == "direct", paths


def test_calls_without_a_sampled_traceparent_are_not_recorded(pool: Pool) -> None:
    trace_id = secrets.token_hex(16)
    with grpc.insecure_channel(pool.target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        stub.Embed(pb.EmbedRequest(inputs=["x"]), timeout=60)  # a new trace: ratio 0 in this pool
        unsampled = [("traceparent", f"00-{trace_id}-{secrets.token_hex(8)}-00")]
        stub.Embed(pb.EmbedRequest(inputs=["y"]), metadata=unsampled, timeout=60)
    assert pool.traces.wait_for(trace_id, {"embedpool Embed"}, timeout_s=3) == []


def test_the_python_client_carries_the_callers_span(pool: Pool) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    from embedpool import EmbeddingClient

    tracer = TracerProvider().get_tracer("caller")
    with (
        tracer.start_as_current_span("the caller's work") as span,
        EmbeddingClient(target=pool.target, timeout=60) as client,
    ):
        client.get_text_embedding("a traced call")
    ids = span.get_span_context()
    trace_id = f"{ids.trace_id:032x}"
    spans = pool.traces.wait_for(trace_id, {"embedpool Embed", "embedpool forward"})
    assert one(spans, "embedpool Embed").parent_id == f"{ids.span_id:016x}"
    assert one(spans, "embedpool forward").service == "embedpool-replica"
