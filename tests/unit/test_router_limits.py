"""The router's own bounds, over a fake backend: names and status messages stay short,
vector scoring is bounded, and an EmbedStream neither buffers without limit nor leaves a
request unanswered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import numpy as np
import pytest

from embedpool.server.errors import InvalidArgument
from embedpool.server.fronts import grpc_server as grpc_front
from embedpool.server.types import EmbedAnswer
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.unit.fake_backend import FakeBackend, serving, vector


async def call_code(coro: object) -> tuple[grpc.StatusCode, str]:
    try:
        await coro  # type: ignore[misc]
    except grpc.aio.AioRpcError as err:
        return err.code(), err.details() or ""
    return grpc.StatusCode.OK, ""


async def test_long_names_are_refused_without_being_echoed() -> None:
    huge = "m" * 100_000
    async with serving() as (target, _, backend), grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        calls = [
            stub.Embed(pb.EmbedRequest(model=pb.ModelSelector(model=huge), inputs=["x"]), timeout=10),
            stub.Embed(pb.EmbedRequest(model=pb.ModelSelector(variant=huge), inputs=["x"]), timeout=10),
            stub.Embed(pb.EmbedRequest(prompt_name=huge, inputs=["x"]), timeout=10),
            stub.GetModel(pb.GetModelRequest(model=huge), timeout=10),
            stub.CountTokens(pb.CountTokensRequest(prompt_name=huge, inputs=["x"]), timeout=10),
        ]
        for call in calls:
            code, details = await call_code(call)
            # Before: the name came back in the status message, a 100 KB header the client
            # dropped, and the caller saw RESOURCE_EXHAUSTED (which clients retry).
            assert code == grpc.StatusCode.INVALID_ARGUMENT, details
            assert "100000 characters" in details and len(details) < 200
    assert backend.seen == []


async def test_status_messages_are_cut_to_fit_a_header() -> None:
    backend = FakeBackend()
    async with serving(backend) as (target, _, _), grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        for exc, code in [
            (InvalidArgument("é" * 100_000), grpc.StatusCode.INVALID_ARGUMENT),
            (RuntimeError("🙂" * 100_000), grpc.StatusCode.INTERNAL),
        ]:
            backend.fail_with = exc
            got, details = await call_code(stub.Embed(pb.EmbedRequest(inputs=["x"]), timeout=10))
            assert got == code and len(details) <= 512 and details.endswith("characters, cut)")


async def test_vector_similarity_counts_against_the_input_limit() -> None:
    async with serving(max_inputs=8) as (target, _, _), grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        nine = [pb.Vector(values=[1.0, 2.0])] * 9
        for req, field in [
            (pb.SimilarityRequest(query_vectors=nine, document_vectors=nine[:1]), "query_vectors"),
            (pb.SimilarityRequest(query_vectors=nine[:1], document_vectors=nine), "document_vectors"),
        ]:
            code, details = await call_code(stub.Similarity(req, timeout=10))
            assert code == grpc.StatusCode.INVALID_ARGUMENT
            assert details == f"{field} has 9 vectors; the limit is 8 per request"
        # At the limit: answered, and a float32-max vector has a finite cosine.
        big = [pb.Vector(values=[3.4e38, -3.4e38])] * 8
        resp = await stub.Similarity(
            pb.SimilarityRequest(query_vectors=big, document_vectors=big), timeout=10
        )
        assert np.allclose([s for row in resp.rows for s in row.scores], 1.0)


def stream_of(n: int, pulled: list[int]) -> AsyncIterator[pb.EmbedStreamRequest]:
    async def gen() -> AsyncIterator[pb.EmbedStreamRequest]:
        for i in range(n):
            pulled.append(i)
            yield pb.EmbedStreamRequest(request_id=str(i), request=pb.EmbedRequest(inputs=[f"text {i}"]))

    return gen()


async def test_a_stream_that_is_not_read_stops_being_read() -> None:
    async with serving(max_queued=16) as (_, core, _):
        pulled: list[int] = []
        responses = core.embed_stream(grpc_front.stream_requests(stream_of(1000, pulled)))
        first = await responses.__anext__()
        await asyncio.sleep(0.3)  # the reader has all the time it wants; the client reads nothing
        # Before: all 1000 requests were read and answered into an unbounded buffer.
        assert len(pulled) <= 16 + 1, len(pulled)
        rest = [r async for r in responses]
    answers = {request_id: answer for request_id, answer, _ in [first, *rest]}
    assert sorted(answers, key=int) == [str(i) for i in range(1000)]
    for rid, r in answers.items():  # every answer is its own request's
        assert isinstance(r, EmbedAnswer)
        assert np.array_equal(r.output.vectors[0], vector(f"text {rid}"))


async def test_every_stream_request_is_answered_even_when_the_backend_fails_unexpectedly() -> None:
    backend = FakeBackend()
    backend.fail_with = RuntimeError("replica crashed in an unexpected way")
    async with serving(backend) as (target, _, _), grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        pulled: list[int] = []
        out = [r async for r in stub.EmbedStream(stream_of(5, pulled), timeout=10)]
    # Before: an exception other than the pool's own errors left the request with no answer.
    assert sorted(r.request_id for r in out) == ["0", "1", "2", "3", "4"]
    assert all(r.error.code == grpc.StatusCode.INTERNAL.value[0] for r in out)
    assert all("unexpected way" in r.error.message for r in out)


@pytest.mark.parametrize("n", [0, 1])
async def test_stream_edge_sizes(n: int) -> None:
    async with serving() as (target, _, _), grpc.aio.insecure_channel(target) as channel:
        out = [r async for r in pb_grpc.EmbeddingServiceStub(channel).EmbedStream(stream_of(n, []))]
    assert len(out) == n


@pytest.mark.parametrize("raised", ["InvalidArgument", "NotFound", "Overloaded", "DeadlineExceeded"])
async def test_an_error_raised_in_a_replica_keeps_its_class_and_message(raised: str) -> None:
    # count_tokens raises in the replica (embed returns errors as values); Ray hands the
    # router a RayTaskError(<class>) whose .message rebuilt as type(exc)(msg) crashed with
    # AttributeError, and the caller got UNKNOWN instead of INVALID_ARGUMENT.
    from ray import exceptions as ray_exceptions

    from embedpool.server import errors
    from embedpool.server.serving.handle_backend import RayVariantBackend

    cls = getattr(errors, raised)
    wrapped = ray_exceptions.RayTaskError(
        "count_tokens", "traceback", cls("no such prompt")
    ).as_instanceof_cause()

    class Method:
        async def remote(self, *args: object) -> None:
            raise wrapped

    handle = type("Handle", (), {"count_tokens": Method()})()
    with pytest.raises(cls) as err:
        await RayVariantBackend("m--v", handle).count_tokens(["x"], "document", None, "nope")  # type: ignore[arg-type]
    assert type(err.value) is cls and err.value.message == "no such prompt"


async def test_request_counter_is_tagged_with_the_resolved_model_and_variant() -> None:
    from embedpool.server.service.core import Call

    seen: list[tuple[str, str, str, str, str]] = []

    def count(call: Call, code: str) -> None:
        seen.append((call.method, code, call.model, call.variant, call.front))

    async def stream() -> AsyncIterator[pb.EmbedStreamRequest]:
        yield pb.EmbedStreamRequest(request_id="1", request=pb.EmbedRequest(inputs=["a"]))
        yield pb.EmbedStreamRequest(request_id="2", request=pb.EmbedRequest(inputs=[""]))

    async with serving(count=count) as (target, _, _), grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        await stub.Embed(pb.EmbedRequest(inputs=["a"]), timeout=10)
        await call_code(stub.Embed(pb.EmbedRequest(inputs=[]), timeout=10))
        await call_code(stub.Embed(pb.EmbedRequest(model=pb.ModelSelector(model="nope"), inputs=["a"])))
        [_ async for _ in stub.EmbedStream(stream(), timeout=10)]
    assert seen[:3] == [
        ("Embed", "OK", "fake", "custom-cpu", "grpc"),
        ("Embed", "INVALID_ARGUMENT", "fake", "custom-cpu", "grpc"),
        ("Embed", "NOT_FOUND", "", "", "grpc"),  # nothing resolved: no tags to give
    ]
    # each request of a stream is counted with its own code, in the order they complete
    assert sorted(seen[3:]) == [
        ("EmbedStream", "INVALID_ARGUMENT", "fake", "custom-cpu", "grpc"),
        ("EmbedStream", "OK", "fake", "custom-cpu", "grpc"),
    ]


async def test_request_bytes_that_do_not_parse_get_invalid_argument() -> None:
    """Before: grpc.aio's own UNKNOWN "Unexpected <class 'DecodeError'>" (RELIABILITY.md)."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    not_utf8 = b"\x12\x03\xed\xa0\x80"  # inputs = U+D800 as CESU-8 bytes
    async with serving() as (target, _, backend), grpc.aio.insecure_channel(target) as channel:
        for method in ("Embed", "CountTokens", "Similarity"):
            raw = channel.unary_unary(f"/embedpool.v1.EmbeddingService/{method}")
            for payload in (not_utf8, b"\xff\xff\xff"):
                code, details = await call_code(raw(payload, timeout=10))
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code, details)
                assert "not a valid protobuf message" in details
        stream = channel.stream_stream("/embedpool.v1.EmbeddingService/EmbedStream")

        async def frames() -> AsyncIterator[bytes]:
            first = pb.EmbedStreamRequest(request_id="1", request=pb.EmbedRequest(inputs=["a"]))
            yield first.SerializeToString()
            yield b"\xff\xff\xff"

        with pytest.raises(grpc.aio.AioRpcError) as err:
            [r async for r in stream(frames(), timeout=10)]
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # well-formed calls, health included, still work
        stub = pb_grpc.EmbeddingServiceStub(channel)
        assert len((await stub.Embed(pb.EmbedRequest(inputs=["ok"]), timeout=10)).embeddings) == 1
        health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        assert health.status == health_pb2.HealthCheckResponse.SERVING
    assert "ok" in backend.seen


GARBAGE = b"\xff\xff\xff"


def frame(i: int) -> bytes:
    return pb.EmbedStreamRequest(
        request_id=str(i), request=pb.EmbedRequest(inputs=[f"text {i}"])
    ).SerializeToString()


@pytest.mark.busy_cpu
async def test_a_malformed_frame_ends_the_stream_with_invalid_argument_however_tasks_interleave() -> None:
    # Before: the refusal was sent from the core's reader task; when it met an answer being
    # written (likelier on a busy machine) gRPC core refused the status batch
    # (TOO_MANY_OPERATIONS) and the client waited for its deadline: DEADLINE_EXCEEDED.
    async with serving() as (target, _, _), grpc.aio.insecure_channel(target) as channel:
        method = channel.stream_stream("/embedpool.v1.EmbeddingService/EmbedStream")
        for attempt in range(24):
            valid = (1, 4, 16)[attempt % 3]

            async def frames(n: int = valid) -> AsyncIterator[bytes]:
                for i in range(n):
                    yield frame(i)
                yield GARBAGE

            got: list[pb.EmbedStreamResponse] = []
            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for raw in method(frames(), timeout=10):
                    got.append(pb.EmbedStreamResponse.FromString(raw))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (attempt, err.value.details())
            assert "not a valid protobuf message" in (err.value.details() or "")
            for r in got:  # answers sent before the refusal are whole and their own request's
                assert np.array_equal(
                    np.array(r.response.embeddings[0].values, np.float32), vector(f"text {r.request_id}")
                )

            # An answer read before the bad frame is written stays sent; then the refusal.
            call = method(timeout=10)
            await call.write(frame(7))
            first = pb.EmbedStreamResponse.FromString(await call.read())
            assert first.request_id == "7" and first.HasField("response")
            await call.write(GARBAGE)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # and the pool goes on answering
        stub = pb_grpc.EmbeddingServiceStub(channel)
        assert len((await stub.Embed(pb.EmbedRequest(inputs=["ok"]), timeout=10)).embeddings) == 1
