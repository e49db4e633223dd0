"""The LlamaIndex and LangChain drop-ins against the live pool: the docs' own retrieval, an
ingestion pipeline, LangChain's standard integration suite, and one Embed RPC per chunk
counted by the pool itself."""

from __future__ import annotations

import numpy as np
import pytest
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_embedpool import EmbedpoolEmbeddings
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.embeddings.embedpool import EmbedpoolEmbedding

from embedpool import EmbeddingClient
from tests.integration.conftest import Pool
from tests.integration.pool_metrics import settled_embed_rpcs

MODEL = "all-minilm-l6-v2"
QUERY = "Which planet is known as the Red Planet?"
PLANETS = [  # the LlamaIndex embeddings docs' four sentences
    "Venus is often called Earth's twin because of its similar size and proximity.",
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Jupiter, the largest planet in our solar system, has a prominent red spot.",
    "Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
]
MARS = PLANETS[1]


@pytest.fixture
def embed_model(pool: Pool) -> EmbedpoolEmbedding:
    return EmbedpoolEmbedding(target=pool.target, model_name=MODEL, timeout=60)


def test_settings_embed_model_retrieves_the_red_planet(embed_model: EmbedpoolEmbedding) -> None:
    Settings.embed_model = embed_model
    try:
        index = VectorStoreIndex.from_documents([Document(text=t) for t in PLANETS])
        (top,) = index.as_retriever(similarity_top_k=1).retrieve(QUERY)
    finally:
        Settings.embed_model = None  # type: ignore[assignment]
    assert top.node.get_content() == MARS


def test_per_index_embed_model_and_an_ingestion_pipeline(pool: Pool) -> None:
    embed = EmbedpoolEmbedding(target=pool.target, model_name=MODEL, variant="onnx-cpu", timeout=60)
    pipeline = IngestionPipeline(transformations=[SentenceSplitter(chunk_size=64, chunk_overlap=0), embed])
    nodes = pipeline.run(documents=[Document(text=t) for t in PLANETS])
    assert len(nodes) == 4 and all(len(n.embedding or []) == 384 for n in nodes)
    index = VectorStoreIndex(nodes, embed_model=embed)
    (top,) = index.as_retriever(similarity_top_k=1).retrieve(QUERY)
    assert top.node.get_content() == MARS


async def test_an_async_batch_of_hundreds_equals_the_native_client(
    pool: Pool, embed_model: EmbedpoolEmbedding
) -> None:
    texts = [f"note {i}: {PLANETS[i % 4]}" for i in range(300)]
    got = np.array(await embed_model.aget_text_embedding_batch(texts), np.float32)
    with EmbeddingClient(target=pool.target, model=MODEL, timeout=60) as client:
        want = client.embed(texts).embeddings
    assert got.shape == (300, 384)
    assert float(np.min(np.sum(got * want, axis=1))) >= 0.9999


def test_a_round_trip_through_to_dict_still_embeds(embed_model: EmbedpoolEmbedding) -> None:
    rebuilt = EmbedpoolEmbedding.from_dict(embed_model.to_dict())
    a, b = embed_model.get_query_embedding(QUERY), rebuilt.get_query_embedding(QUERY)
    assert float(np.dot(a, b)) >= 0.9999


def test_a_batch_costs_one_embed_rpc_per_chunk_as_the_pool_counts_them(pool: Pool) -> None:
    # onnx-int8 is asked for by few tests; the counter settles before and after.
    embed = EmbedpoolEmbedding(
        target=pool.target, model_name=MODEL, variant="onnx-int8", embed_batch_size=40, timeout=60
    )
    before = settled_embed_rpcs(MODEL, "onnx-int8")
    vectors = embed.get_text_embedding_batch([f"chunked text {i}" for i in range(100)])
    embed.get_agg_embedding_from_queries([QUERY] * 100)
    assert len(vectors) == 100
    # 100 texts at 40 per chunk: 3 RPCs; the batched aggregate: 3 more. One at a time: 200.
    assert settled_embed_rpcs(MODEL, "onnx-int8", at_least=before + 6) == before + 6


def test_langchain_in_memory_store_finds_the_red_planet(pool: Pool) -> None:
    embeddings = EmbedpoolEmbeddings(target=pool.target, model=MODEL, timeout=60)
    store = InMemoryVectorStore.from_texts(PLANETS, embedding=embeddings)
    (top,) = store.similarity_search(QUERY, k=1)
    assert top.page_content == MARS


class TestEmbedpoolEmbeddingsIntegration(EmbeddingsIntegrationTests):
    """LangChain's standard integration suite, unmodified, against the live pool."""

    @pytest.fixture(autouse=True)
    def _target(self, pool: Pool) -> None:
        self.target = pool.target

    @property
    def embeddings_class(self) -> type[EmbedpoolEmbeddings]:
        return EmbedpoolEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, object]:
        return {"target": self.target, "model": MODEL, "timeout": 60}
