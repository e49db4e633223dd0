"""EmbeddingClient: the blocking client (AsyncEmbeddingClient is its asyncio twin)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import grpc
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

__all__ = ["EmbeddingClient"]

_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


class EmbeddingClient(ClientBase):
    """A blocking client of an embedpool pool, usable where LlamaIndex expects an embed model.

    It has LlamaIndex's ``BaseEmbedding`` methods (``get_query_embedding``,
    ``get_text_embedding``, ``get_text_embedding_batch``,
    ``get_agg_embedding_from_queries``, ``similarity``), returning
    ``list[float]``, plus pool-native methods returning numpy arrays
    (``embed``, ``embed_numpy``, ``rank``, ``score_vectors``, ``list_models``,
    ``get_model``, ``count_tokens``). ``AsyncEmbeddingClient`` has the same
    methods as coroutines, with LlamaIndex's ``aget_*`` names for the
    LlamaIndex ones. Use it as a context manager, or call ``close()``.

    Every argument is keyword-only:

    target: ``host:port`` of the pool.
    model, variant: the model (empty: the pool's default) and exact variant
        (empty: chosen by ``backend`` / ``device`` preference).
    backend, device: preferred runtime ("torch", "onnx", "openvino") and
        device ("cpu", "cuda"); the pool falls back when it has no such variant.
    embed_batch_size: inputs per RPC (LlamaIndex's name), capped by the pool's
        ``Limits.max_inputs_per_request``, fetched once with GetModel when a
        call first has more than one input.
    max_concurrency: sub-batch RPCs one call runs at once.
    timeout: overall deadline in seconds of each public call, retries
        included (None: no deadline). Running out raises DeadlineExceededError.
    retries, retry_backoff: UNAVAILABLE and RESOURCE_EXHAUSTED are retried up
        to ``retries`` times, waiting ``retry_backoff * 2**n`` seconds (with
        jitter, capped at 2 s) or the server's ``retry-after-ms`` hint.
        Nothing else is retried.
    truncate: cut over-long inputs silently, as LlamaIndex does (False makes
        an over-long input an InvalidInputError).
    normalize: L2-normalize vectors.
    dimensions: Matryoshka truncation to the first N dimensions (0: full).
    query_instruction, text_instruction: an explicit prompt put before
        queries / documents, like HuggingFaceEmbedding's; None uses the
        model's own prompt for the input type.
    tls, root_certificates: use TLS; ``root_certificates`` (PEM bytes or a
        path) implies it. Without them, the system's roots are used.
    token: bearer token sent as ``authorization: Bearer <token>``; None reads
        ``EMBEDPOOL_TOKEN``. With TLS it rides in call credentials, otherwise
        (loopback) in plain metadata.
    max_message_bytes: largest message sent or received.
    keepalive_time_ms: gRPC keepalive ping interval (None: gRPC's default).
    channel_options: extra gRPC channel options, applied after the client's.
    metadata: extra metadata sent with every call.
    channel: a channel of your own; the client then ignores the transport
        arguments above and does not close it.
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
        channel: grpc.Channel | None = None,
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
        if channel is None:
            credentials = options.channel_credentials()
            if credentials is None:
                channel = grpc.insecure_channel(options.target, options=options.grpc_options())
            else:
                channel = grpc.secure_channel(options.target, credentials, options=options.grpc_options())
        self._channel: grpc.Channel = channel
        self._stub = pb_grpc.EmbeddingServiceStub(channel)
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------

    def close(self) -> None:
        """Close the channel (unless it was passed in) and the worker threads. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)
        if self._owns_channel:
            self._channel.close()

    def __enter__(self) -> EmbeddingClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- LlamaIndex's BaseEmbedding surface ----------------------------------------------

    def get_query_embedding(self, query: str) -> list[float]:
        """Embed one search query (with the query prompt / ``query_instruction``)."""
        return self._embed([query], self._spec("query")).tolist()[0]

    def get_text_embedding(self, text: str) -> list[float]:
        """Embed one document text (with the document prompt / ``text_instruction``)."""
        return self._embed([text], self._spec("document")).tolist()[0]

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[list[float]]:
        """Embed document texts, in order, split into concurrent sub-batches.

        ``show_progress`` shows a bar (tqdm when installed) when the call takes
        more than one sub-batch. ``kwargs`` are accepted for LlamaIndex
        compatibility and ignored. An empty list returns [] without a call.
        """
        texts = check_texts(texts)
        if not texts:
            return []
        return self._embed(texts, self._spec("document"), show_progress=show_progress).tolist()

    def get_agg_embedding_from_queries(self, queries: list[str], agg_fn: AggFn | None = None) -> list[float]:
        """Embed the queries (in one batched call) and aggregate them, by default their mean."""
        queries = check_texts(queries, "queries")
        embeddings = self._embed(queries, self._spec("query")).tolist()
        return (agg_fn or mean_agg)(embeddings)

    # -- pool-native methods ---------------------------------------------------------------

    def embed(
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
        """Embed texts as an ``(n, dims)`` array with the pool's usage and timings.

        Unset arguments take the client's settings. ``prompt`` (an explicit
        prompt) or ``prompt_name`` (one of the model's) replace the input
        type's prompt. ``precision`` other than "float32" returns quantized
        int8 / uint8 vectors (binary ones packed 8 dimensions to a byte). An
        empty ``texts`` returns an empty result without a call.
        """
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
        return self._embed(check_texts(texts), spec, show_progress=show_progress)

    def embed_numpy(
        self, texts: Sequence[str], *, input_type: InputTypeName = "document"
    ) -> npt.NDArray[np.float32]:
        """Embed texts and return just the float32 ``(n, dims)`` numpy array."""
        return self.embed(texts, input_type=input_type).embeddings

    def rank(
        self,
        query: str,
        documents: Sequence[str],
        *,
        mode: SimilarityMode | str = SimilarityMode.DEFAULT,
        top_k: int = 0,
    ) -> list[tuple[int, float]]:
        """Score documents against a query in the pool: ``(document index, score)``, best first.

        ``top_k`` > 0 keeps only the best ``top_k``; 0 returns every document.
        The pool embeds both sides with the model's own query and document
        prompts: the Similarity RPC has no prompt fields, so
        ``query_instruction`` / ``text_instruction`` do not apply here.
        """
        documents = check_texts(documents, "documents")
        if not documents:
            return []
        request = similarity_request(
            self._options, mode=mode, top_k=top_k, queries=[query], documents=documents
        )
        deadline = Deadline(self._options.timeout)
        response = self._call(self._stub.Similarity, request, deadline, "Similarity")
        return ranked_rows(response, 1)[0]

    def score_vectors(
        self,
        queries: Any,
        documents: Any,
        *,
        mode: SimilarityMode | str = SimilarityMode.DEFAULT,
        top_k: int = 0,
    ) -> list[list[tuple[int, float]]]:
        """Score query vectors against document vectors in the pool.

        ``queries`` and ``documents`` are 2-D array-likes (one vector per row;
        a 1-D vector counts as one row). Returns, per query, ``(document
        index, score)`` pairs best first: the best ``top_k``, or all with 0.
        """
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
        response = self._call(self._stub.Similarity, request, deadline, "Similarity")
        return ranked_rows(response, len(query_vectors))

    def list_models(self) -> list[ModelInfo]:
        """Every model the pool serves, default first."""
        deadline = Deadline(self._options.timeout)
        response = self._call(self._stub.ListModels, pb.ListModelsRequest(), deadline, "ListModels")
        return [ModelInfo.from_proto(m) for m in response.models]

    def get_model(self, name: str = "") -> ModelInfo:
        """Describe one model; "" is the pool's default model."""
        deadline = Deadline(self._options.timeout)
        request = pb.GetModelRequest(model=name)
        return ModelInfo.from_proto(self._call(self._stub.GetModel, request, deadline, "GetModel").model)

    def count_tokens(self, texts: Sequence[str], *, input_type: InputTypeName = "document") -> list[int]:
        """Tokens each text would use, prompt and special tokens included, before truncation."""
        texts = check_texts(texts)
        if not texts:
            return []
        spec = self._spec(input_type)
        deadline = Deadline(self._options.timeout)
        slices = self._slices(len(texts), deadline)
        requests = [spec.count_tokens_request(texts[s]) for s in slices]
        responses = self._call_all(self._stub.CountTokens, requests, deadline, "CountTokens")
        return [int(n) for resp in responses for n in resp.token_counts]

    # -- internals --------------------------------------------------------------------------

    def _embed(self, texts: list[str], spec: EmbedSpec, *, show_progress: bool = False) -> EmbedResult:
        self._check_open()
        if not texts:
            return spec.empty_result()
        deadline = Deadline(self._options.timeout)
        slices = self._slices(len(texts), deadline)
        requests = [spec.embed_request(texts[s]) for s in slices]
        sizes = [s.stop - s.start for s in slices]
        responses = self._call_all(
            self._stub.Embed, requests, deadline, "Embed", sizes=sizes, show_progress=show_progress
        )
        return spec.merge(responses, sizes)

    def _slices(self, n: int, deadline: Deadline) -> list[slice]:
        """Sub-batches for ``n`` inputs, fetching the server's limit first if unknown."""
        if n > 1 and self._server_max_inputs is None:
            try:
                request = pb.GetModelRequest(model=self._options.model)
                info = self._call(self._stub.GetModel, request, deadline, "GetModel")
                self._remember_limit(info.model.limits.max_inputs_per_request)
            except EmbedpoolError as err:
                if not self._limit_unknowable(err):
                    raise
                self._remember_limit(0)
        return split(n, self._batch_size())

    def _call(
        self,
        method: grpc.UnaryUnaryMultiCallable[_Req, _Resp],
        request: _Req,
        deadline: Deadline,
        name: str,
    ) -> _Resp:
        """One RPC with retries, within the call's deadline."""
        self._check_open()
        attempt = Attempt(self._options.retry_policy, deadline, name)
        while True:
            timeout = attempt.timeout()
            try:
                return method(request, timeout=timeout, metadata=with_trace(self._metadata))
            except grpc.RpcError as err:
                delay = attempt.failed(err)
            time.sleep(delay)

    def _call_all(
        self,
        method: grpc.UnaryUnaryMultiCallable[_Req, _Resp],
        requests: list[_Req],
        deadline: Deadline,
        name: str,
        *,
        sizes: Sequence[int] = (),
        show_progress: bool = False,
    ) -> list[_Resp]:
        """Run the sub-batch RPCs on worker threads; responses in request order.

        The first failure (after its retries) is raised; sub-batches not yet
        started are cancelled.
        """
        if len(requests) == 1:
            return [self._call(method, requests[0], deadline, name)]
        progress = make_progress(sum(sizes), show_progress and len(requests) > 1)
        executor = self._get_executor()
        futures: dict[Future[_Resp], int] = {
            executor.submit(self._call, method, request, deadline, name): i
            for i, request in enumerate(requests)
        }
        results: list[_Resp | None] = [None] * len(requests)
        try:
            for future in as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                if sizes:
                    progress.update(sizes[i])
        finally:
            for future in futures:
                future.cancel()
            progress.close()
        return [r for r in results if r is not None]

    def _get_executor(self) -> ThreadPoolExecutor:
        with self._lock:
            self._check_open()
            if self._executor is None:
                self._executor = ThreadPoolExecutor(
                    max_workers=self._options.max_concurrency, thread_name_prefix="embedpool"
                )
            return self._executor
