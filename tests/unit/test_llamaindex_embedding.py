"""llama-index-embeddings-embedpool against the fake pool: a real BaseEmbedding, one Embed RPC
per chunk, the framework's events kept, serialization without the token or the channel."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from llama_index.core import Settings
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.embeddings.embedpool import EmbedpoolEmbedding

from tests.unit.conftest import Pool
from tests.unit.fake_backend import DIMS, expected


def texts(n: int) -> list[str]:
    return [f"passage {i} on topic {i % 3}" for i in range(n)]


def model(pool: Pool, **kwargs: object) -> EmbedpoolEmbedding:
    return EmbedpoolEmbedding(target=pool.target, timeout=10, **kwargs)  # type: ignore[arg-type]


def test_it_is_what_settings_embed_model_takes(pool: Pool) -> None:
    embed = model(pool)
    assert isinstance(embed, BaseEmbedding)
    Settings.embed_model = embed  # LlamaIndex's check: before, EmbeddingClient failed it
    try:
        assert Settings.embed_model is embed
    finally:
        Settings.embed_model = None  # type: ignore[assignment]


def test_query_and_text_embeddings_carry_their_input_type(pool: Pool) -> None:
    embed = model(pool)
    q = embed.get_query_embedding("what is a pool?")
    d = embed.get_text_embedding("a pool serves models")
    np.testing.assert_allclose(q, expected(["what is a pool?"], input_type="query")[0], rtol=1e-6)
    np.testing.assert_allclose(d, expected(["a pool serves models"])[0], rtol=1e-6)
    assert [r.item.input_type for r in pool.calls_of("Embed")] == ["query", "document"]


def test_a_batch_is_one_embed_rpc_per_chunk_and_the_events_stay(pool: Pool) -> None:
    debug = LlamaDebugHandler()
    embed = model(pool, embed_batch_size=5, callback_manager=CallbackManager([debug]))
    got = embed.get_text_embedding_batch(texts(23), show_progress=True)
    np.testing.assert_allclose(np.array(got, np.float32), expected(texts(23)), rtol=1e-6, atol=1e-7)
    assert pool.embed_batch_sizes == [5, 5, 5, 5, 3]  # not 23 single calls
    assert len(debug.get_event_pairs(CBEventType.EMBEDDING)) == 5


def test_the_aggregate_of_queries_is_batched_too(pool: Pool) -> None:
    debug = LlamaDebugHandler()
    embed = model(pool, embed_batch_size=4, callback_manager=CallbackManager([debug]))
    queries = [f"query {i}" for i in range(10)]
    agg = embed.get_agg_embedding_from_queries(queries)
    np.testing.assert_allclose(agg, expected(queries, input_type="query").mean(axis=0), rtol=1e-5, atol=1e-6)
    # LlamaIndex's own version: 10 Embed RPCs of one query each.
    assert pool.embed_batch_sizes == [4, 4, 2]
    assert all(r.item.input_type == "query" for r in pool.calls_of("Embed"))
    assert len(debug.get_event_pairs(CBEventType.EMBEDDING)) == 3
    assert embed.get_agg_embedding_from_queries(queries, agg_fn=lambda e: e[0]) == pytest.approx(
        expected(["query 0"], input_type="query")[0].tolist(), rel=1e-6
    )


async def test_the_async_hooks_use_the_async_client_on_the_running_loop(pool: Pool) -> None:
    embed = model(pool, embed_batch_size=5)
    got = await embed.aget_text_embedding_batch(texts(12))
    np.testing.assert_allclose(np.array(got, np.float32), expected(texts(12)), rtol=1e-6, atol=1e-7)
    assert sorted(pool.embed_batch_sizes) == [2, 5, 5]
    q = await embed.aget_query_embedding("async query")
    assert len(q) == DIMS
    agg = await embed.aget_agg_embedding_from_queries(["a", "b", "c"])
    np.testing.assert_allclose(agg, expected(["a", "b", "c"], input_type="query").mean(axis=0), rtol=1e-5)
    assert not embed.clients.made_sync  # no blocking client (and no thread) was made


def test_each_event_loop_gets_its_own_channel(pool: Pool) -> None:
    embed = model(pool)
    # asyncio.run twice: a grpc.aio channel made on the first loop cannot serve the second.
    first = asyncio.run(embed.aget_text_embedding("one"))
    second = asyncio.run(embed.aget_text_embedding("two"))
    np.testing.assert_allclose([first, second], expected(["one", "two"]), rtol=1e-6)


def test_options_reach_the_pool(pool: Pool) -> None:
    embed = model(
        pool,
        model_name="fake",
        variant="onnx-cpu",
        dimensions=8,
        normalize=False,
        truncate=False,
        query_instruction="find: ",
    )
    embed.get_query_embedding("q")
    (req,) = pool.calls_of("Embed")
    assert (
        req.choice.model,
        req.choice.variant,
        req.item.dimensions,
        req.item.normalize,
        req.item.truncate,
    ) == (
        "fake",
        "onnx-cpu",
        8,
        False,
        False,
    )
    assert req.item.prompt == "find: "


def test_it_serializes_without_the_token_or_the_channel_and_is_rebuilt(pool: Pool) -> None:
    embed = model(pool, model_name="fake", embed_batch_size=7, dimensions=8, token="s3cret")
    embed.get_text_embedding("connect first")  # a live channel must not get in the way
    data = embed.to_dict()
    assert data["class_name"] == "EmbedpoolEmbedding" and data["target"] == pool.target
    assert "token" not in data and "s3cret" not in embed.to_json() and "s3cret" not in repr(embed)
    json.dumps(data)
    rebuilt = EmbedpoolEmbedding.from_dict(data)
    assert (rebuilt.model_name, rebuilt.embed_batch_size, rebuilt.dimensions) == ("fake", 7, 8)
    assert len(rebuilt.get_text_embedding("again")) == 8
