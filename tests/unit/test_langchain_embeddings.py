"""langchain-embedpool: LangChain's own standard unit tests, unmodified, plus the fake pool."""

from __future__ import annotations

import numpy as np
from langchain_embedpool import EmbedpoolEmbeddings
from langchain_tests.unit_tests import EmbeddingsUnitTests
from pydantic import SecretStr

from tests.unit.conftest import Pool, StartPool
from tests.unit.fake_backend import expected


class TestEmbedpoolEmbeddingsStandard(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[EmbedpoolEmbeddings]:
        return EmbedpoolEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, object]:
        return {"target": "127.0.0.1:1", "model": "all-minilm-l6-v2"}

    @property
    def init_from_env_params(self) -> tuple[dict[str, str], dict[str, object], dict[str, object]]:
        return {"EMBEDPOOL_TOKEN": "from-the-env"}, {"target": "127.0.0.1:1"}, {"token": "from-the-env"}


def test_documents_and_queries_over_one_rpc_per_batch(pool: Pool) -> None:
    embeddings = EmbedpoolEmbeddings(target=pool.target, embed_batch_size=5, timeout=10)
    docs = [f"doc {i}" for i in range(5)]
    got = embeddings.embed_documents(docs)
    np.testing.assert_allclose(np.array(got, np.float32), expected(docs), rtol=1e-6, atol=1e-7)
    q = embeddings.embed_query("a question")
    np.testing.assert_allclose(q, expected(["a question"], input_type="query")[0], rtol=1e-6)
    assert pool.embed_batch_sizes == [5, 1]


async def test_the_async_methods_are_native(pool: Pool) -> None:
    embeddings = EmbedpoolEmbeddings(target=pool.target, timeout=10)
    got = await embeddings.aembed_documents(["x", "y"])
    np.testing.assert_allclose(np.array(got, np.float32), expected(["x", "y"]), rtol=1e-6, atol=1e-7)
    assert len(await embeddings.aembed_query("z")) == len(got[0])
    assert not embeddings.clients.made_sync  # no blocking client: no executor thread behind the await


def test_the_token_is_secret_and_sent_as_a_bearer(start_pool: StartPool) -> None:
    pool = start_pool(tokens=["t0ken"])
    embeddings = EmbedpoolEmbeddings(target=pool.target, token=SecretStr("t0ken"), timeout=10)
    assert "t0ken" not in repr(embeddings)
    assert len(embeddings.embed_query("q")) > 0
    assert pool.metadata[-1].get("authorization") == "Bearer t0ken"
