"""EmbedpoolEmbeddings: LangChain's Embeddings backed by an embedpool pool over gRPC."""

from __future__ import annotations

from dataclasses import fields

from langchain_core.embeddings import Embeddings
from langchain_core.utils import secret_from_env
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from embedpool import AsyncEmbeddingClient, ClientOptions, EmbeddingClient, LazyClients

# The client's settings that this class carries as fields of the same name.
_CLIENT_FIELDS = frozenset(f.name for f in fields(ClientOptions)) - {"token"}


class EmbedpoolEmbeddings(BaseModel, Embeddings):
    """Embeddings from an embedpool pool, for any LangChain vector store or retriever.

    ```python
    from langchain_embedpool import EmbedpoolEmbeddings

    embeddings = EmbedpoolEmbeddings(target="pool.internal:50051", model="all-minilm-l6-v2")
    vectors = embeddings.embed_documents(["Mars is the Red Planet."])
    ```

    ``model`` is the pool's model name ("" = the pool's default), ``variant`` an exact
    variant ("" = the pool's choice, steered by ``backend`` / ``device``). Queries get the
    model's query prompt and documents its document prompt unless ``query_instruction`` /
    ``text_instruction`` give one. ``embed_documents`` sends one Embed RPC per
    ``embed_batch_size`` texts, concurrently; the async methods use the asyncio client.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    target: str = Field(default="localhost:50051", description="host:port of the pool's gRPC port.")
    model: str = Field(default="", description="Pool model name; empty = the pool's default model.")
    variant: str = Field(default="", description="Exact variant; empty = the pool's choice.")
    backend: str | None = Field(default=None, description="Preferred backend: torch, onnx, openvino.")
    device: str | None = Field(default=None, description="Preferred device: cpu, cuda.")
    embed_batch_size: int = Field(default=256, gt=0, description="Texts per Embed RPC.")
    query_instruction: str | None = Field(default=None, description="Prompt before queries.")
    text_instruction: str | None = Field(default=None, description="Prompt before documents.")
    normalize: bool = Field(default=True, description="L2-normalize the vectors.")
    dimensions: int = Field(default=0, ge=0, description="Matryoshka dimensions; 0 = all of them.")
    truncate: bool = Field(default=True, description="Cut over-long texts (else they are an error).")
    timeout: float | None = Field(default=60.0, description="Deadline of each call in seconds.")
    retries: int = Field(default=3, ge=0, description="Retries of UNAVAILABLE and RESOURCE_EXHAUSTED.")
    max_concurrency: int = Field(default=8, ge=1, description="Sub-batch RPCs one call runs at once.")
    tls: bool = Field(default=False, description="Use TLS with the system's roots.")
    root_certificates: str | None = Field(default=None, description="PEM text or a path; implies TLS.")
    token: SecretStr | None = Field(
        default_factory=secret_from_env("EMBEDPOOL_TOKEN", default=None),
        description="Bearer token; defaults to $EMBEDPOOL_TOKEN.",
    )

    _clients: LazyClients | None = PrivateAttr(default=None)

    @property
    def clients(self) -> LazyClients:
        """The pool's clients, made on first use from the fields (the client's names)."""
        if self._clients is None:
            kwargs = {name: getattr(self, name) for name in _CLIENT_FIELDS if name in type(self).model_fields}
            # "" rather than None: the field has read $EMBEDPOOL_TOKEN already.
            self._clients = LazyClients(**kwargs, token=self.token.get_secret_value() if self.token else "")
        return self._clients

    @property
    def client(self) -> EmbeddingClient:
        """The blocking client."""
        return self.clients.sync

    @property
    def aclient(self) -> AsyncEmbeddingClient:
        """The asyncio client of the running event loop."""
        return self.clients.for_running_loop()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed documents (the model's document prompt), in order."""
        return self.client.get_text_embedding_batch(texts)

    def embed_query(self, text: str) -> list[float]:
        """Embed one search query (the model's query prompt)."""
        return self.client.get_query_embedding(text)

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self.aclient.aget_text_embedding_batch(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return await self.aclient.aget_query_embedding(text)
