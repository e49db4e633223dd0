"""AsyncEmbeddingClient: the asyncio twin of EmbeddingClient, method for method."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
import grpc.aio
import numpy as np
import numpy.typing as npt

from ._base import AggFn, ClientBase, mean_agg
from ._options import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_TARGET, ClientOptions
from ._progress import make_progress
from ._request import (
    EmbedSpec,
    InputTypeName,
    TruncationDirectionName,
    check_texts,
    ranked_rows,
    similarity_request,
    split,
    vectors_to_proto,
)
from ._retry import Attempt, Deadline
from ._trace import with_trace
from .errors import EmbedpoolError
from .results import EmbedResult, ModelInfo, PrecisionName
from .similarity import SimilarityMode
from .v1 import embedding_service_pb2 as pb
from .v1 import embedding_service_pb2_grpc as pb_grpc

__all__ = ["AsyncEmbeddingClient"]

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class AsyncEmbeddingClient(ClientBase):
    """The asyncio client: EmbeddingClient's constructor and methods, as coroutines.

    The LlamaIndex methods have LlamaIndex's async names (``aget_query_embedding``,
    ``aget_text_embedding``, ``aget_text_embedding_batch``,
    ``aget_agg_embedding_from_queries``); the pool-native ones keep their
    names (``await client.embed(...)``); ``similarity`` is local math and not
    a coroutine. Use ``async with``, or ``await client.aclose()``. The channel
    is created on first use, in the running event loop; ``channel`` takes a
    ``grpc.aio.Channel`` of your own, which the client does not close.

    See EmbeddingClient for every constructor argument.
    """

    def __init__(
        self,
        *,
        target: str = DEFAULT_TARGET,
        model: str = "",
        variant: str = "",
        backend: str | None = None,
        device: str | None = None,
        embed_batch_size: int = 256,
        max_concurrency: int = 8,
        timeout: float | None = 30.0,
        retries: int = 3,
        retry_backoff: float = 0.05,
        truncate: bool = True,
        normalize: bool = True,
        dimensions: int = 0,
        query_instruction: str | None = None,
        text_instruction: str | None = None,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        token: str | None = None,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        keepalive_time_ms: int | None = 30000,
        channel_options: Sequence[tuple[str, Any]] = (),
        metadata: Sequence[tuple[str, str]] = (),
        channel: grpc.aio.Channel | None = None,
    ) -> None:
        options = ClientOptions(
            target=target,
            model=model,
            variant=variant,
            backend=backend,
            device=device,
            embed_batch_size=embed_batch_size,
            max_concurrency=max_concurrency,
            timeout=timeout,
            retries=retries,
            retry_backoff=retry_backoff,
            truncate=truncate,
            normalize=normalize,
            dimensions=dimensions,
            query_instruction=query_instruction,
            text_instruction=text_instruction,
            tls=tls,
            root_certificates=root_certificates,
            token=token,
            max_message_bytes=max_message_bytes,
            keepalive_time_ms=keepalive_time_ms,
            channel_options=tuple(channel_options),
            metadata=tuple(metadata),
        )
        super().__init__(options, owns_channel=channel is None)
        # Read the credentials now, so that a bad certificate path fails here, not on first use.
        self._credentials = options.channel_credentials() if channel is None else None
        self._channel: grpc.aio.Channel | None = channel
        self._stub: pb_grpc.EmbeddingServiceAsyncStub | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the channel (unless it was passed in). Idempotent."""
        if self._closed:
            return
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None and self._owns_channel:
            await channel.close(None)

    async def __aenter__(self) -> AsyncEmbeddingClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- LlamaIndex's BaseEmbedding surface ----------------------------------------------

    async def aget_query_embedding(self, query: str) -> list[float]:
        """Embed one search query (with the query prompt / ``query_instruction``)."""
        return (await self._embed([query], self._spec("query"))).tolist()[0]

    async def aget_text_embedding(self, text: str) -> list[float]:
        """Embed one document text (with the document prompt / ``text_instruction``)."""
        return (await self._embed([text], self._spec("document"))).tolist()[0]

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[list[float]]:
        """Embed document texts, in order, split into concurrent sub-batches.

        See EmbeddingClient.get_text_embedding_batch.
        """
        texts = check_texts(texts)
        if not texts:
            return []
        result = await self._embed(texts, self._spec("document"), show_progress=show_progress)
        return result.tolist()

    async def aget_agg_embedding_from_queries(
        self, queries: list[str], agg_fn: AggFn | None = None
    ) -> list[float]:
        """Embed the queries (in one batched call) and aggregate them, by default their mean."""
        queries = check_texts(queries, "queries")
        embeddings = (await self._embed(queries, self._spec("query"))).tolist()
        return (agg_fn or mean_agg)(embeddings)

    # -- pool-native methods ---------------------------------------------------------------

    async def embed(
        self,
        texts: Sequence[str],
        *,
        input_type: InputTypeName = "document",
        prompt: str | None = None,
        prompt_name: str | None = None,
        normalize: bool | None = None,
        truncate: bool | None = None,
        truncation_direction: TruncationDirectionName = "right",
        dimensions: int | None = None,
        precision: PrecisionName = "float32",
        show_progress: bool = False,
    ) -> EmbedResult:
        """Embed texts as an ``(n, dims)`` array; see EmbeddingClient.embed."""
        spec = EmbedSpec.resolve(
            self._options,
            input_type=input_type,
            prompt=prompt,
            prompt_name=prompt_name,
            normalize=normalize,
            truncate=truncate,
            truncation_direction=truncation_direction,
            dimensions=dimensions,
            precision=precision,
        )
        return await self._embed(check_texts(texts), spec, show_progress=show_progress)

    async def embed_numpy(
        self, texts: Sequence[str], *, input_type: InputTypeName = "document"
    ) -> npt.NDArray[np.float32]:
        """Embed texts and return just the float32 ``(n, dims)`` numpy array."""
        return (await self.embed(texts, input_type=input_type)).embeddings

    async def rank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        mode: SimilarityMode | str = SimilarityMode.DEFAULT,
        top_k: int = 0,
    ) -> list[tuple[int, float]]:
        """Score documents against a query in the pool; see EmbeddingClient.rank."""
        documents = check_texts(documents, "documents")
        if not documents:
            return []
        request = similarity_request(
            self._options, mode=mode, top_k=top_k, queries=[query], documents=documents
        )
        deadline = Deadline(self._options.timeout)
        response = await self._call(self._get_stub().Similarity, request, deadline, "Similarity")
        return ranked_rows(response, 1)[0]

    async def score_vectors(
        self,
        queries: Any,
        documents: Any,
        *,
        mode: SimilarityMode | str = SimilarityMode.DEFAULT,
        top_k: int = 0,
    ) -> list[list[tuple[int, float]]]:
        """Score query vectors against document vectors; see EmbeddingClient.score_vectors."""
        query_vectors = vectors_to_proto(queries, "queries")
        document_vectors = vectors_to_proto(documents, "documents")
        request = similarity_request(
            self._options,
            mode=mode,
            top_k=top_k,
            query_vectors=query_vectors,
            document_vectors=document_vectors,
        )
        deadline = Deadline(self._options.timeout)
        response = await self._call(self._get_stub().Similarity, request, deadline, "Similarity")
        return ranked_rows(response, len(query_vectors))

    async def list_models(self) -> list[ModelInfo]:
        """Every model the pool serves, default first."""
        deadline = Deadline(self._options.timeout)
        stub = self._get_stub()
        response = await self._call(stub.ListModels, pb.ListModelsRequest(), deadline, "ListModels")
        return [ModelInfo.from_proto(m) for m in response.models]

    async def get_model(self, name: str = "") -> ModelInfo:
        """Describe one model; "" is the pool's default model."""
        deadline = Deadline(self._options.timeout)
        request = pb.GetModelRequest(model=name)
        response = await self._call(self._get_stub().GetModel, request, deadline, "GetModel")
        return ModelInfo.from_proto(response.model)

    async def count_tokens(
        self, texts: Sequence[str], *, input_type: InputTypeName = "document"
    ) -> list[int]:
        """Tokens each text would use, prompt and special tokens included, before truncation."""
        texts = check_texts(texts)
        if not texts:
            return []
        spec = self._spec(input_type)
        deadline = Deadline(self._options.timeout)
        slices = await self._slices(len(texts), deadline)
        requests = [spec.count_tokens_request(texts[s]) for s in slices]
        responses = await self._call_all(self._get_stub().CountTokens, requests, deadline, "CountTokens")
        return [int(n) for resp in responses for n in resp.token_counts]

    # -- internals --------------------------------------------------------------------------

    def _get_stub(self) -> pb_grpc.EmbeddingServiceAsyncStub:
        self._check_open()
        if self._stub is None:
            if self._channel is None:
                options = self._options
                if self._credentials is None:
                    self._channel = grpc.aio.insecure_channel(options.target, options=options.grpc_options())
                else:
                    self._channel = grpc.aio.secure_channel(
                        options.target, self._credentials, options=options.grpc_options()
                    )
            self._stub = pb_grpc.EmbeddingServiceStub(self._channel)
        return self._stub

    async def _embed(self, texts: list[str], spec: EmbedSpec, *, show_progress: bool = False) -> EmbedResult:
        self._check_open()
        if not texts:
            return spec.empty_result()
        deadline = Deadline(self._options.timeout)
        slices = await self._slices(len(texts), deadline)
        requests = [spec.embed_request(texts[s]) for s in slices]
        sizes = [s.stop - s.start for s in slices]
        responses = await self._call_all(
            self._get_stub().Embed, requests, deadline, "Embed", sizes=sizes, show_progress=show_progress
        )
        return spec.merge(responses, sizes)

    async def _slices(self, n: int, deadline: Deadline) -> list[slice]:
        """Sub-batches for ``n`` inputs, fetching the server's limit first if unknown."""
        if n > 1 and self._server_max_inputs is None:
            try:
                request = pb.GetModelRequest(model=self._options.model)
                info = await self._call(self._get_stub().GetModel, request, deadline, "GetModel")
                self._remember_limit(info.model.limits.max_inputs_per_request)
            except EmbedpoolError as err:
                if not self._limit_unknowable(err):
                    raise
                self._remember_limit(0)
        return split(n, self._batch_size())

    async def _call(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
        request: _Req,
        deadline: Deadline,
        name: str,
    ) -> _Resp:
        """One RPC with retries, within the call's deadline."""
        attempt = Attempt(self._options.retry_policy, deadline, name)
        while True:
            timeout = attempt.timeout()
            try:
                return await method(request, timeout=timeout, metadata=with_trace(self._metadata))
            except grpc.RpcError as err:
                delay = attempt.failed(err)
            await asyncio.sleep(delay)

    async def _call_all(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[_Req, _Resp],
        requests: list[_Req],
        deadline: Deadline,
        name: str,
        *,
        sizes: Sequence[int] = (),
        show_progress: bool = False,
    ) -> list[_Resp]:
        """Run the sub-batch RPCs concurrently (at most max_concurrency); responses in order.

        The first failure (after its retries) is raised and the other sub-batches are cancelled.
        """
        if len(requests) == 1:
            return [await self._call(method, requests[0], deadline, name)]
        progress = make_progress(sum(sizes), show_progress and len(requests) > 1)
        semaphore = asyncio.Semaphore(self._options.max_concurrency)

        async def one(i: int) -> _Resp:
            async with semaphore:
                response = await self._call(method, requests[i], deadline, name)
            if sizes:
                progress.update(sizes[i])
            return response

        tasks = [asyncio.ensure_future(one(i)) for i in range(len(requests))]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            # Look at every finished task's exception, so that none goes unretrieved.
            errors = [task.exception() for task in tasks if task.done() and not task.cancelled()]
            first = next((error for error in errors if error is not None), None)
            if first is not None:
                raise first
            return [task.result() for task in tasks]
        finally:
            for task in tasks:
                task.cancel()
            progress.close()
