"""Every refusal the pool makes: its code, a message that names the limit, and the pool still serving."""

from __future__ import annotations

import asyncio
import concurrent.futures

import grpc
import numpy as np
import pytest

from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc

from .conftest import Pool

pytestmark = pytest.mark.integration

CASES = {
    "unknown model": (
        pb.EmbedRequest(model=pb.ModelSelector(model="gpt-embed"), inputs=["x"]),
        grpc.StatusCode.NOT_FOUND,
        "unknown model 'gpt-embed'",
    ),
    "unknown variant": (
        pb.EmbedRequest(model=pb.ModelSelector(variant="tpu"), inputs=["x"]),
        grpc.StatusCode.NOT_FOUND,
        "torch-cpu",
    ),
    "empty input list": (pb.EmbedRequest(inputs=[]), grpc.StatusCode.INVALID_ARGUMENT, "inputs is empty"),
    "empty string": (
        pb.EmbedRequest(inputs=["ok", ""]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "inputs[1] is an empty string",
    ),
    "too many dimensions": (
        pb.EmbedRequest(inputs=["x"], dimensions=1000),
        grpc.StatusCode.INVALID_ARGUMENT,
        "384 dimensions",
    ),
    "bad precision": (
        pb.EmbedRequest(inputs=["x"], precision=42),
        grpc.StatusCode.INVALID_ARGUMENT,
        "precision=42",
    ),
    "too many inputs": (
        pb.EmbedRequest(inputs=["x"] * 513),
        grpc.StatusCode.INVALID_ARGUMENT,
        "the limit is 512 per request",
    ),
    "over-long input, truncate off": (
        pb.EmbedRequest(inputs=["short", "word " * 400]),
        grpc.StatusCode.INVALID_ARGUMENT,
        "limit is 256",
    ),
    "prompt and prompt_name": (
        pb.EmbedRequest(inputs=["x"], prompt="a: ", prompt_name="query"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "at most one of prompt and prompt_name",
    ),
}


@pytest.fixture(scope="module")
def stub(pool: Pool) -> pb_grpc.EmbeddingServiceStub:
    return pb_grpc.EmbeddingServiceStub(grpc.insecure_channel(pool.target))


def assert_serving(stub: pb_grpc.EmbeddingServiceStub) -> None:
    assert len(stub.Embed(pb.EmbedRequest(inputs=["still here"]), timeout=60).embeddings) == 1


@pytest.mark.parametrize("case", list(CASES))
def test_embed_refusals(stub: pb_grpc.EmbeddingServiceStub, case: str) -> None:
    request, code, message = CASES[case]
    with pytest.raises(grpc.RpcError) as err:
        stub.Embed(request, timeout=60)
    assert err.value.code() == code
    assert message in err.value.details()
    assert_serving(stub)


def test_over_long_input_is_embedded_when_truncate_is_on(stub: pb_grpc.EmbeddingServiceStub) -> None:
    r = stub.Embed(pb.EmbedRequest(inputs=["word " * 400], truncate=True), timeout=60)
    assert r.usage.truncated_inputs == 1 and r.usage.input_tokens == 256


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (pb.SimilarityRequest(queries=["q"], documents=["d"], mode=9), "mode=9"),
        (pb.SimilarityRequest(queries=["q"], documents=[]), "documents is empty"),
        (
            pb.SimilarityRequest(queries=["q"], query_vectors=[pb.Vector(values=[1.0])]),
            "not both",
        ),
        (
            pb.SimilarityRequest(
                query_vectors=[pb.Vector(values=[1.0, 2.0])], document_vectors=[pb.Vector(values=[1.0])]
            ),
            "dimensions",
        ),
        (
            pb.SimilarityRequest(
                query_vectors=[pb.Vector(values=[float("nan")])], document_vectors=[pb.Vector(values=[1.0])]
            ),
            "NaN",
        ),
    ],
)
def test_similarity_refusals(
    stub: pb_grpc.EmbeddingServiceStub, request_: pb.SimilarityRequest, message: str
) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Similarity(request_, timeout=60)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()
    assert_serving(stub)


def test_errors_keep_their_code_through_rays_proxy(pool: Pool) -> None:
    proxy = pb_grpc.EmbeddingServiceStub(grpc.insecure_channel(pool.proxy_target))
    with pytest.raises(grpc.RpcError) as err:
        proxy.Embed(pb.EmbedRequest(model=pb.ModelSelector(model="gpt-embed"), inputs=["x"]), timeout=60)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND and "unknown model" in err.value.details()


def test_deadline_exceeded(stub: pb_grpc.EmbeddingServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Embed(pb.EmbedRequest(inputs=["a long enough text to take a moment"] * 512), timeout=0.05)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert_serving(stub)


def test_overload_gives_resource_exhausted_with_a_retry_hint(
    pool: Pool, stub: pb_grpc.EmbeddingServiceStub
) -> None:
    # The queue bound is 256 requests per variant: 400 concurrent callers on a 2-core
    # machine overflow it. Every call is answered: OK or RESOURCE_EXHAUSTED.
    def call(i: int) -> tuple[grpc.StatusCode, tuple[tuple[str, str], ...]]:
        try:
            stub.Embed(pb.EmbedRequest(inputs=[f"text {i} " * 20] * 4), timeout=120)
            return grpc.StatusCode.OK, ()
        except grpc.RpcError as exc:
            return exc.code(), tuple(exc.trailing_metadata() or ())

    with concurrent.futures.ThreadPoolExecutor(400) as ex:
        results = list(ex.map(call, range(400)))
    codes = {c for c, _ in results}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    exhausted = [md for c, md in results if c == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert exhausted, "the queue bound was never reached"
    assert all(("retry-after-ms", "100") in md for md in exhausted)
    assert_serving(stub)


async def test_a_replica_killed_mid_request_is_resent_and_the_caller_gets_its_answer(pool: Pool) -> None:
    """The Router's direct call fails when the replica dies; it re-sends the batch through Ray,
    which waits for Serve's replacement replica, and the caller never sees the failure."""
    import ray

    name = "instructor-style--custom-cpu"
    aio = pb_grpc.EmbeddingServiceStub(grpc.aio.insecure_channel(pool.target))
    selector = pb.ModelSelector(model="instructor-style")
    texts = [f"long text {i} " * 40 for i in range(512)]
    reference = await aio.Embed(pb.EmbedRequest(model=selector, inputs=texts[:2]), timeout=60)
    call = aio.Embed(pb.EmbedRequest(model=selector, inputs=texts), timeout=180)
    await asyncio.sleep(0.3)
    actors = [
        a
        for a in ray.util.list_named_actors(all_namespaces=True)
        if a["name"].startswith("SERVE_REPLICA::") and f"#{name}#" in a["name"]
    ]
    assert actors
    for a in actors:
        ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]), no_restart=False)
    response = await call
    assert response.variant == "custom-cpu" and len(response.embeddings) == 512
    for got, want in zip(response.embeddings[:2], reference.embeddings, strict=True):
        np.testing.assert_allclose(got.values, want.values, atol=1e-6)
