"""The pool-native methods of both clients: embed, rank, score_vectors, models, tokens."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from embedpool import AsyncEmbeddingClient, EmbeddingClient, EmbedResult, SimilarityMode, similarity
from embedpool.server.fronts import grpc_server as grpc_front
from embedpool.server.fronts.auth import TokenAuth
from embedpool.server.fronts.outcome import no_count
from embedpool.server.types import EmbedRequest
from embedpool.v1 import embedding_service_pb2 as pb
from tests.unit.conftest import Pool, Serve
from tests.unit.fake_backend import (
    DIMS,
    INFERENCE_NS,
    MAX_TOKENS,
    QUEUE_NS_PER_TEXT,
    FakeBackend,
    count_tokens,
    expected,
    make_core,
    serving_servicer,
)

DOCS = ["the cat sat on the mat", "dogs chase cats", "stock markets fell today", "a kitten naps"]


def test_embed_returns_array_and_metadata(client: EmbeddingClient, pool: Pool) -> None:
    result = client.embed(DOCS + ["x"] * 6, input_type="query")
    assert isinstance(result, EmbedResult)
    assert result.embeddings.dtype == np.float32 and result.embeddings.shape == (10, DIMS)
    assert result.embeddings.flags.writeable
    np.testing.assert_allclose(result.embeddings, expected(DOCS + ["x"] * 6, input_type="query"), rtol=1e-6)
    assert (result.dimensions, result.model, result.variant, result.precision) == (
        DIMS,
        "fake",
        "custom-cpu",
        "float32",
    )
    assert len(result) == 10
    # Split 7 + 3: tokens summed, timings the max over sub-batches.
    assert sorted(pool.embed_batch_sizes) == [3, 7]
    assert result.input_tokens == sum(count_tokens("query: " + t) for t in DOCS + ["x"] * 6)
    assert result.queue_ns == 7 * QUEUE_NS_PER_TEXT and result.inference_ns == INFERENCE_NS
    assert result.truncated_inputs == 0


def test_embed_options_reach_the_request(client: EmbeddingClient, pool: Pool) -> None:
    result = client.embed(
        ["hello"],
        prompt_name="title",
        normalize=False,
        truncate=False,
        truncation_direction="left",
        dimensions=8,
    )
    ((method, req),) = pool.calls
    assert method == "Embed"
    assert isinstance(req, EmbedRequest)  # as the gRPC front converted it for the core
    assert req.item.prompt_name == "title" and req.item.prompt is None
    assert not req.item.normalize and not req.item.truncate
    assert req.item.truncate_left and req.item.dimensions == 8
    (item,) = pool.backend.items  # and the model was asked for just that
    assert (item.prompt_name, item.normalize, item.truncate, item.truncate_left, item.dimensions) == (
        "title",
        False,
        False,
        True,
        8,
    )
    assert result.embeddings.shape == (1, 8)
    np.testing.assert_allclose(
        result.embeddings, expected(["hello"], prompt="title: ", normalize=False, dimensions=8)
    )


def test_embed_empty_and_bad_arguments(client: EmbeddingClient, pool: Pool) -> None:
    empty = client.embed([])
    assert empty.embeddings.shape == (0, 0) and len(empty) == 0
    with pytest.raises(ValueError, match="precision"):
        client.embed(["x"], precision="float16")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most one"):
        client.embed(["x"], prompt="a", prompt_name="b")
    assert pool.calls == [] and pool.metadata == []


def test_truncation_is_reported(client: EmbeddingClient) -> None:
    long = " ".join(["word"] * (MAX_TOKENS * 2))
    result = client.embed([long, "short"])
    assert result.truncated_inputs == 1
    assert result.input_tokens == MAX_TOKENS + count_tokens("short")


@pytest.mark.parametrize(
    ("precision", "dtype", "width"),
    [
        ("int8", np.int8, DIMS),
        ("uint8", np.uint8, DIMS),
        ("binary", np.int8, DIMS // 8),
        ("ubinary", np.uint8, DIMS // 8),
    ],
)
def test_quantized_precisions(client: EmbeddingClient, precision: Any, dtype: type, width: int) -> None:
    result = client.embed(DOCS, precision=precision)
    assert result.precision == precision
    assert result.embeddings.dtype == dtype and result.embeddings.shape == (len(DOCS), width)
    assert result.dimensions == DIMS  # before binary packing
    np.testing.assert_array_equal(result.embeddings, expected(DOCS, precision=precision))


class AnswersInNumbers(grpc_front.EmbeddingServicer):
    """The pool's servicer, answering in numbers whatever encoding was asked for."""

    async def Embed(self, request: pb.EmbedRequest, context: Any) -> pb.EmbedResponse:
        request.encoding = pb.VECTOR_ENCODING_NUMBERS
        return await super().Embed(request, context)


@pytest.mark.parametrize("precision", ["float32", "int8", "ubinary"])
def test_numbers_encoding_fallback(serve: Serve, precision: Any) -> None:
    core = make_core(FakeBackend(), max_inputs=7)
    target = serve(serving_servicer(AnswersInNumbers(core, TokenAuth([]), no_count)))
    with EmbeddingClient(target=target, timeout=10) as client:
        result = client.embed(DOCS, precision=precision)
    want = expected(DOCS, precision=precision)
    assert core.calls_of("Embed")[0].encoding == "numbers"
    assert result.embeddings.dtype == want.dtype
    np.testing.assert_allclose(result.embeddings, want, rtol=1e-6)


def test_embed_numpy(client: EmbeddingClient) -> None:
    array = client.embed_numpy(DOCS, input_type="query")
    np.testing.assert_allclose(array, expected(DOCS, input_type="query"), rtol=1e-6)


def test_rank_matches_local_similarity(client: EmbeddingClient, pool: Pool) -> None:
    query = "cats and kittens"
    q = expected([query], input_type="query")[0]
    d = expected(DOCS)
    for mode in SimilarityMode:
        ranked = client.rank(query, DOCS, mode=mode)
        want = sorted(((i, similarity(q, d[i], mode)) for i in range(len(DOCS))), key=lambda p: -p[1])
        assert [i for i, _ in ranked] == [i for i, _ in want]
        np.testing.assert_allclose([s for _, s in ranked], [s for _, s in want], rtol=1e-5, atol=1e-6)
    top = client.rank(query, DOCS, top_k=2)
    assert pool.calls_of("Similarity")[-1].top_k == 2
    assert top == client.rank(query, DOCS)[:2]
    assert client.rank(query, []) == []


def test_score_vectors(client: EmbeddingClient) -> None:
    queries = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=np.float32)
    documents = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    rows = client.score_vectors(queries, documents, mode="dot_product")
    assert rows == [[(0, 1.0), (1, 0.0), (2, 0.0)], [(1, 2.0), (0, 0.0), (2, 0.0)]]
    cosine = client.score_vectors(queries[0], documents, top_k=1)
    assert cosine == [[(0, pytest.approx(1.0))]]
    euclid = client.score_vectors(queries[:1], documents, mode=SimilarityMode.EUCLIDEAN)
    assert euclid == [[(0, 0.0), (2, -1.0), (1, pytest.approx(-np.sqrt(2), rel=1e-6))]]


def test_models_and_tokens(client: EmbeddingClient) -> None:
    (model,) = client.list_models()
    assert model.name == "fake" and model.is_default and model.dimensions == DIMS
    assert model.default_similarity is SimilarityMode.COSINE
    assert [v.name for v in model.variants] == ["custom-cpu", "onnx-cpu"]
    assert (model.variants[0].backend, model.variants[0].device, model.variants[0].is_default) == (
        "custom",
        "cpu",
        True,
    )
    assert (model.variants[1].backend, model.variants[1].is_default) == ("onnx", False)
    assert model.limits.max_inputs_per_request == 7 and model.prompts["query"] == "query: "
    assert model.max_input_tokens == MAX_TOKENS
    assert client.get_model() == client.get_model("fake") == model
    assert model.to_dict()["default_similarity"] == "cosine"
    many = [f"text {i}" for i in range(9)]
    assert client.count_tokens(many) == [count_tokens(t) for t in many]
    assert client.count_tokens(["hi"], input_type="query") == [count_tokens("query: hi")]
    assert client.count_tokens([]) == []


def test_model_selector_is_sent(target: str, pool: Pool) -> None:
    with EmbeddingClient(
        target=target, model="fake", variant="onnx-cpu", backend="onnx", device="cpu"
    ) as client:
        client.get_text_embedding("x")
        assert client.embed(["x"]).variant == "onnx-cpu"  # and the pool served that variant
    choice = pool.calls_of("Embed")[0].choice
    assert (choice.model, choice.variant, choice.backend, choice.device) == (
        "fake",
        "onnx-cpu",
        "onnx",
        "cpu",
    )


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="backend"):
        EmbeddingClient(backend="tensorflow")
    with pytest.raises(ValueError, match="embed_batch_size"):
        EmbeddingClient(embed_batch_size=0)


async def test_async_native_methods(target: str) -> None:
    async with AsyncEmbeddingClient(target=target, dimensions=8) as client:
        result = await client.embed(DOCS * 3, precision="uint8")
        array = await client.embed_numpy(DOCS)
        ranked = await client.rank("cats", DOCS, top_k=3)
        rows = await client.score_vectors([[1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]])
        models = await client.list_models()
        model = await client.get_model()
        tokens = await client.count_tokens(DOCS * 3)
    assert result.embeddings.shape == (12, 8) and result.embeddings.dtype == np.uint8
    np.testing.assert_array_equal(result.embeddings, expected(DOCS * 3, dimensions=8, precision="uint8"))
    np.testing.assert_allclose(array, expected(DOCS, dimensions=8), rtol=1e-6)
    assert len(ranked) == 3 and ranked[0][1] >= ranked[1][1] >= ranked[2][1]
    assert rows == [[(1, pytest.approx(1.0)), (0, 0.0)]]
    assert models == [model]
    assert tokens == [count_tokens(t) for t in DOCS * 3]
