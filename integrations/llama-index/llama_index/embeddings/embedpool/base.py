"""EmbedpoolEmbedding: LlamaIndex's BaseEmbedding backed by an embedpool pool over gRPC.

Only the framework's hooks are overridden (``_get_query_embedding`` ... and their
``_aget_*`` twins), so the base class keeps its events, callbacks, ``show_progress``,
cache and batching by ``embed_batch_size``: each chunk it hands over is one Embed RPC.
``get_agg_embedding_from_queries`` is the one public method replaced, because the base
class embeds its queries one at a time (a round trip each); here they go in chunks too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import fields

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding, mean_agg
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # re-exported without __all__
from llama_index.core.instrumentation.events.embedding import EmbeddingEndEvent, EmbeddingStartEvent

from embedpool import AsyncEmbeddingClient, ClientOptions, EmbeddingClient, LazyClients

dispatcher = get_dispatcher(__name__)

# The client's settings that this class carries as fields of the same name.
_CLIENT_FIELDS = frozenset(f.name for f in fields(ClientOptions)) - {"model"}


class EmbedpoolEmbedding(BaseEmbedding):
    """Embeddings from an embedpool pool: ``Settings.embed_model = EmbedpoolEmbedding(...)``.

    ``model_name`` is the pool's model name ("" = the pool's default model), ``variant`` an
    exact variant of it ("" = the pool's choice, steered by ``backend`` / ``device``).
    Queries get the model's query prompt and documents its document prompt unless
    ``query_instruction`` / ``text_instruction`` give one. The bearer token is read from
    ``token`` or ``$EMBEDPOOL_TOKEN`` and never serialized; nor is the channel, which is
    made on first use (one per event loop for the async calls).
    """

    model_name: str = Field(default="", description="Pool model name; empty = the pool's default model.")
    embed_batch_size: int = Field(
        default=256, gt=0, le=2048, description="Texts per Embed RPC (capped by the pool's limit)."
    )
    target: str = Field(default="localhost:50051", description="host:port of the pool's gRPC port.")
    variant: str = Field(default="", description="Exact variant; empty = the pool's choice.")
    backend: str | None = Field(default=None, description="Preferred backend: torch, onnx, openvino.")
    device: str | None = Field(default=None, description="Preferred device: cpu, cuda.")
    query_instruction: str | None = Field(
        default=None, description="Prompt put before queries; None = the model's query prompt."
    )
    text_instruction: str | None = Field(
        default=None, description="Prompt put before documents; None = the model's document prompt."
    )
    normalize: bool = Field(default=True, description="L2-normalize the vectors.")
    dimensions: int = Field(default=0, ge=0, description="Matryoshka dimensions; 0 = all of them.")
    truncate: bool = Field(default=True, description="Cut over-long texts (else they are an error).")
    timeout: float | None = Field(
        default=60.0, description="Deadline of each call in seconds, retries included."
    )
    retries: int = Field(default=3, ge=0, description="Retries of UNAVAILABLE and RESOURCE_EXHAUSTED.")
    max_concurrency: int = Field(default=8, ge=1, description="Sub-batch RPCs one call runs at once.")
    tls: bool = Field(default=False, description="Use TLS with the system's roots.")
    root_certificates: str | None = Field(default=None, description="PEM text or a path to it; implies TLS.")
    token: str | None = Field(
        default=None,
        exclude=True,
        repr=False,
        description="Bearer token; None reads $EMBEDPOOL_TOKEN. Never serialized or shown.",
    )

    _clients: LazyClients | None = PrivateAttr(default=None)

    @classmethod
    def class_name(cls) -> str:
        return "EmbedpoolEmbedding"

    @property
    def clients(self) -> LazyClients:
        """The pool's clients, made on first use from the fields (the client's names)."""
        if self._clients is None:
            kwargs = {name: getattr(self, name) for name in _CLIENT_FIELDS if name in type(self).model_fields}
            self._clients = LazyClients(**kwargs, model=self.model_name)
        return self._clients

    @property
    def client(self) -> EmbeddingClient:
        """The blocking client, for the sync hooks."""
        return self.clients.sync

    @property
    def aclient(self) -> AsyncEmbeddingClient:
        """The asyncio client of the running event loop, for the async hooks."""
        return self.clients.for_running_loop()

    def close(self) -> None:
        """Close the blocking client's channel (an async one closes with its loop)."""
        if self._clients is not None:
            self._clients.close()

    # -- the framework's hooks --------------------------------------------------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        return self.client.get_query_embedding(query)

    def _get_text_embedding(self, text: str) -> Embedding:
        return self.client.get_text_embedding(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return self.client.get_text_embedding_batch(texts)

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return await self.aclient.aget_query_embedding(query)

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await self.aclient.aget_text_embedding(text)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await self.aclient.aget_text_embedding_batch(texts)

    # -- batched aggregate -----------------------------------------------------------------

    def _chunks(self, queries: list[str]) -> Iterator[list[str]]:
        for start in range(0, len(queries), self.embed_batch_size):
            yield queries[start : start + self.embed_batch_size]

    def _start_event(self) -> str:
        """The framework's embedding event for one chunk, as get_text_embedding_batch fires it."""
        model_dict = self.to_payload()
        dispatcher.event(EmbeddingStartEvent(model_dict=model_dict))
        return self.callback_manager.on_event_start(
            CBEventType.EMBEDDING, payload={EventPayload.SERIALIZED: model_dict}
        )

    def _end_event(self, event_id: str, chunk: list[str], embeddings: list[Embedding]) -> None:
        dispatcher.event(EmbeddingEndEvent(chunks=chunk, embeddings=embeddings))
        self.callback_manager.on_event_end(
            CBEventType.EMBEDDING,
            payload={EventPayload.CHUNKS: chunk, EventPayload.EMBEDDINGS: embeddings},
            event_id=event_id,
        )

    def get_agg_embedding_from_queries(
        self, queries: list[str], agg_fn: Callable[..., Embedding] | None = None
    ) -> Embedding:
        """The queries' embeddings aggregated (mean by default), one RPC per
        ``embed_batch_size`` queries instead of the base class's one per query."""
        embeddings: list[Embedding] = []
        for chunk in self._chunks(queries):
            event_id = self._start_event()
            got = self.client.embed(chunk, input_type="query").embeddings.tolist()
            self._end_event(event_id, chunk, got)
            embeddings += got
        return (agg_fn or mean_agg)(embeddings)

    async def aget_agg_embedding_from_queries(
        self, queries: list[str], agg_fn: Callable[..., Embedding] | None = None
    ) -> Embedding:
        """The async twin of ``get_agg_embedding_from_queries``; the chunks go out together."""
        client, chunks = self.aclient, list(self._chunks(queries))
        event_ids = [self._start_event() for _ in chunks]
        results = await asyncio.gather(*(client.embed(c, input_type="query") for c in chunks))
        embeddings: list[Embedding] = []
        for event_id, chunk, result in zip(event_ids, chunks, results, strict=True):
            got = result.embeddings.tolist()
            self._end_event(event_id, chunk, got)
            embeddings += got
        return (agg_fn or mean_agg)(embeddings)
