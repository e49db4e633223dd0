"""The LlamaIndex surface of both clients, against the fake pool."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest

from embedpool import AsyncEmbeddingClient, EmbeddingClient, SimilarityMode
from embedpool.server.fronts import grpc_server as grpc_front
from embedpool.server.fronts.auth import TokenAuth
from embedpool.server.fronts.outcome import no_count
from embedpool.v1 import embedding_service_pb2 as pb
from tests.unit.conftest import MAX_INPUTS, Pool, Serve
from tests.unit.fake_backend import DIMS, FakeBackend, expected, make_core, serving_servicer


def texts(n: int) -> list[str]:
    return [f"document number {i} about topic {i % 5}" for i in range(n)]


def assert_vectors(got: list[list[float]], want: np.ndarray) -> None:
    assert isinstance(got, list) and all(isinstance(row, list) for row in got)
    assert all(isinstance(v, float) for v in got[0])
    np.testing.assert_allclose(np.array(got, dtype=np.float32), want, rtol=1e-6, atol=1e-7)


# -- sync ----------------------------------------------------------------------------------


def test_query_and_text_embedding(client: EmbeddingClient, pool: Pool) -> None:
    query = client.get_query_embedding("what is a pool?")
    text = client.get_text_embedding("a pool serves models")
    assert len(query) == DIMS
    assert_vectors([query], expected(["what is a pool?"], input_type="query"))
    assert_vectors([text], expected(["a pool serves models"]))
    # One input needs no limits lookup: exactly one Embed each, with the input type set.
    assert [method for method, _ in pool.calls] == ["Embed", "Embed"]
    first, second = pool.calls_of("Embed")
    assert first.item.input_type == "query" and second.item.input_type == "document"
    assert first.encoding == "bytes" and first.item.truncate and first.item.normalize


def test_batch_is_split_concurrently_and_keeps_order(target: str, pool: Pool) -> None:
    batch = texts(50)
    with EmbeddingClient(target=target, embed_batch_size=100, max_concurrency=4) as client:
        got = client.get_text_embedding_batch(batch)
        again = client.get_text_embedding_batch(batch[:10])
    assert_vectors(got, expected(batch))
    assert_vectors(again, expected(batch[:10]))
    # Capped at the server's advertised max_inputs_per_request (7), fetched once.
    assert len(pool.calls_of("GetModel")) == 1
    assert sorted(pool.embed_batch_sizes) == sorted([7] * 7 + [1] + [7, 3])
    assert max(pool.embed_batch_sizes) <= MAX_INPUTS


def test_embed_batch_size_smaller_than_server_limit(target: str, pool: Pool) -> None:
    batch = texts(10)
    with EmbeddingClient(target=target, embed_batch_size=3) as client:
        got = client.get_text_embedding_batch(batch)
    assert_vectors(got, expected(batch))
    assert sorted(pool.embed_batch_sizes) == [1, 3, 3, 3]


class StatesNoLimit(grpc_front.EmbeddingServicer):
    """The pool's servicer, with a GetModel that states no max_inputs_per_request."""

    async def GetModel(self, request: pb.GetModelRequest, context: Any) -> pb.GetModelResponse:
        response = await super().GetModel(request, context)
        response.model.limits.max_inputs_per_request = 0
        return response


class HasNoGetModel(grpc_front.EmbeddingServicer):
    """The pool's servicer, without GetModel (as an older pool)."""

    async def GetModel(self, request: pb.GetModelRequest, context: Any) -> pb.GetModelResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")
        raise AssertionError("abort raises")


@pytest.mark.parametrize("servicer", [StatesNoLimit, HasNoGetModel])
def test_no_server_limit_means_embed_batch_size(
    serve: Serve, servicer: type[grpc_front.EmbeddingServicer]
) -> None:
    core = make_core(FakeBackend(), max_inputs=100)  # enforces a limit the client does not know
    target = serve(serving_servicer(servicer(core, TokenAuth([]), no_count)))
    with EmbeddingClient(target=target, embed_batch_size=20) as client:
        got = client.get_text_embedding_batch(texts(25))
    assert_vectors(got, expected(texts(25)))
    assert sorted(len(request.item.texts) for request in core.calls_of("Embed")) == [5, 20]


def test_empty_batch_makes_no_call(client: EmbeddingClient, pool: Pool) -> None:
    assert client.get_text_embedding_batch([]) == []
    assert pool.calls == [] and pool.metadata == []


def test_batch_accepts_llamaindex_kwargs_and_progress(
    client: EmbeddingClient, pool: Pool, capsys: pytest.CaptureFixture[str]
) -> None:
    got = client.get_text_embedding_batch(texts(9), show_progress=True, callback_manager=None)
    assert_vectors(got, expected(texts(9)))
    assert "9/9" in capsys.readouterr().err  # tqdm (or the fallback) writes to stderr


def test_agg_embedding_is_mean_of_query_embeddings(client: EmbeddingClient, pool: Pool) -> None:
    queries = ["first question", "second question", "third"]
    got = client.get_agg_embedding_from_queries(queries)
    want = expected(queries, input_type="query").astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    custom = client.get_agg_embedding_from_queries(queries, agg_fn=lambda rows: rows[-1])
    assert_vectors([custom], expected(queries[-1:], input_type="query"))


def test_instructions_become_prompts(target: str, pool: Pool) -> None:
    with EmbeddingClient(target=target, query_instruction="Q: ", text_instruction="D: ") as client:
        query = client.get_query_embedding("hello")
        text = client.get_text_embedding("hello")
    assert_vectors([query], expected(["hello"], prompt="Q: "))
    assert_vectors([text], expected(["hello"], prompt="D: "))
    assert [request.item.prompt for request in pool.calls_of("Embed")] == ["Q: ", "D: "]
    assert len(pool.calls) == 2


def test_similarity_method_is_local(client: EmbeddingClient, pool: Pool) -> None:
    a, b = [1.0, 0.0], [1.0, 1.0]
    assert client.similarity(a, b) == pytest.approx(1 / np.sqrt(2))
    assert client.similarity(a, b, mode=SimilarityMode.DOT_PRODUCT) == 1.0
    assert client.similarity(a, b, mode="euclidean") == -1.0
    assert pool.calls == [] and pool.metadata == []


def test_single_string_is_refused(client: EmbeddingClient) -> None:
    with pytest.raises(ValueError, match="not a single str"):
        client.get_text_embedding_batch("oops")  # type: ignore[arg-type]


# -- async ---------------------------------------------------------------------------------


async def test_async_llamaindex_methods(target: str, pool: Pool) -> None:
    batch = texts(30)
    async with AsyncEmbeddingClient(target=target, max_concurrency=2, timeout=5) as client:
        query = await client.aget_query_embedding("what is a pool?")
        text = await client.aget_text_embedding("a pool serves models")
        got = await client.aget_text_embedding_batch(batch)
        empty = await client.aget_text_embedding_batch([])
        agg = await client.aget_agg_embedding_from_queries(["a", "b"])
        assert client.similarity(query, query) == pytest.approx(1.0)
    assert_vectors([query], expected(["what is a pool?"], input_type="query"))
    assert_vectors([text], expected(["a pool serves models"]))
    assert_vectors(got, expected(batch))
    assert empty == []
    np.testing.assert_allclose(agg, expected(["a", "b"], input_type="query").mean(axis=0), rtol=1e-6)
    assert sorted(pool.embed_batch_sizes) == sorted([1, 1, 7, 7, 7, 7, 2, 2])
    assert len(pool.calls_of("GetModel")) == 1


async def test_async_client_closed_twice_and_refuses_after(target: str, pool: Pool) -> None:
    client = AsyncEmbeddingClient(target=target)
    await client.aget_text_embedding("x")
    await client.aclose()
    await client.aclose()
    with pytest.raises(Exception, match="closed"):
        await client.aget_text_embedding("x")
