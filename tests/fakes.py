"""A fake embedpool pool for client tests: real gRPC (grpc.aio on 127.0.0.1), fake model.

``FakeServicer`` implements EmbeddingService with a deterministic model: a
text's vector is a hash-seeded normal vector, so tests can compute the
expected embeddings with ``FakeServicer.expected``. It can be told to fail
the next calls of a method, to be slow, to require a token, and it records
what it was sent. ``FakePoolServer`` runs it in a background thread with its
own event loop, so that blocking and asyncio clients can both call it.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import numpy as np

from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc

DIMS = 16
MAX_TOKENS = 32
MAX_INPUTS = 7
QUERY_PROMPT = "query: "
SPECIAL_TOKENS = 2


@dataclass
class Failure:
    """One scripted failure of an RPC."""

    code: grpc.StatusCode
    details: str
    trailing: tuple[tuple[str, str], ...] = ()


@dataclass
class Call:
    method: str
    request: Any
    metadata: dict[str, str]


def fake_vector(text: str, dims: int = DIMS) -> np.ndarray:
    """The fake model's raw (unnormalized) float32 vector for an already-prompted text."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dims).astype(np.float32)


def count_tokens(text: str) -> int:
    return len(text.split()) + SPECIAL_TOKENS


def quantize(vectors: np.ndarray, precision: int) -> np.ndarray:
    if precision == pb.PRECISION_INT8:
        return np.clip(np.round(vectors * 127), -128, 127).astype(np.int8)
    if precision == pb.PRECISION_UINT8:
        return np.clip(np.round((vectors + 1) * 127.5), 0, 255).astype(np.uint8)
    if precision == pb.PRECISION_BINARY:
        return (np.packbits(vectors > 0, axis=-1).astype(np.int16) - 128).astype(np.int8)
    if precision == pb.PRECISION_UBINARY:
        return np.packbits(vectors > 0, axis=-1)
    return vectors.astype(np.float32)


class AbortRpc(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailing = tuple(trailing)


@dataclass
class FakeServicer(pb_grpc.EmbeddingServiceServicer):
    """EmbeddingService over a deterministic fake model named "fake-mini"."""

    max_inputs_per_request: int = MAX_INPUTS
    required_token: str | None = None
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    embed_batch_sizes: list[int] = field(default_factory=list)
    encoding_override: int | None = None  # answer with this encoding instead of the requested one

    def reset(self) -> None:
        self.max_inputs_per_request = MAX_INPUTS
        self.required_token = None
        self.failures.clear()
        self.delays.clear()
        self.calls.clear()
        self.embed_batch_sizes.clear()
        self.encoding_override = None

    def fail(self, method: str, *failures: Failure) -> None:
        """Make the next calls of ``method`` fail, one scripted failure per call."""
        self.failures.setdefault(method, []).extend(failures)

    def calls_of(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    # -- the fake model ------------------------------------------------------------------

    @staticmethod
    def prompt_for(input_type: int, prompt: str = "", prompt_name: str = "") -> str:
        if prompt:
            return prompt
        if prompt_name:
            try:
                return MODEL_PROMPTS[prompt_name]
            except KeyError:
                raise AbortRpc(
                    grpc.StatusCode.INVALID_ARGUMENT, f"unknown prompt_name {prompt_name!r}"
                ) from None
        return QUERY_PROMPT if input_type == pb.INPUT_TYPE_QUERY else ""

    @staticmethod
    def expected(
        texts: Sequence[str],
        *,
        input_type: str = "document",
        prompt: str | None = None,
        normalize: bool = True,
        dimensions: int = 0,
    ) -> np.ndarray:
        """What the fake model returns for short texts (no truncation), float32."""
        if prompt is None:
            prompt = QUERY_PROMPT if input_type == "query" else ""
        vectors = np.stack([fake_vector(prompt + t) for t in texts])
        if dimensions:
            vectors = vectors[:, :dimensions]
        if normalize:
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors.astype(np.float32)

    def _embed_texts(
        self,
        texts: Sequence[str],
        *,
        input_type: int,
        prompt: str,
        truncate: bool,
        left: bool,
        normalize: bool,
        dimensions: int,
    ) -> tuple[np.ndarray, int, int]:
        if not texts:
            raise AbortRpc(grpc.StatusCode.INVALID_ARGUMENT, "inputs must not be empty")
        if dimensions > DIMS:
            raise AbortRpc(
                grpc.StatusCode.INVALID_ARGUMENT, f"dimensions {dimensions} is more than the model's {DIMS}"
            )
        rows, tokens, truncated = [], 0, 0
        for i, text in enumerate(texts):
            if not text:
                raise AbortRpc(grpc.StatusCode.INVALID_ARGUMENT, f"input {i} is empty")
            words = (prompt + text).split()
            n = len(words) + SPECIAL_TOKENS
            full = prompt + text
            if n > MAX_TOKENS:
                if not truncate:
                    raise AbortRpc(
                        grpc.StatusCode.INVALID_ARGUMENT,
                        f"input {i} has {n} tokens, more than the model's {MAX_TOKENS}",
                    )
                keep = MAX_TOKENS - SPECIAL_TOKENS
                full = " ".join(words[-keep:] if left else words[:keep])
                n, truncated = MAX_TOKENS, truncated + 1
            tokens += n
            rows.append(fake_vector(full))
        vectors = np.stack(rows)
        if dimensions:
            vectors = vectors[:, :dimensions]
        if normalize:
            vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors.astype(np.float32), tokens, truncated

    # -- plumbing ------------------------------------------------------------------------

    async def _enter(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        metadata = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        self.calls.append(Call(method, request, metadata))
        if self.required_token is not None:
            header = metadata.get("authorization")
            if header != f"Bearer {self.required_token}":
                raise AbortRpc(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
        delay = self.delays.get(method)
        if delay:
            await asyncio.sleep(delay)
        scripted = self.failures.get(method)
        if scripted:
            failure = scripted.pop(0)
            raise AbortRpc(failure.code, failure.details, failure.trailing)

    async def _run(self, method: str, request: Any, context: grpc.aio.ServicerContext, handler: Any) -> Any:
        try:
            await self._enter(method, request, context)
            return handler(request)
        except AbortRpc as err:
            if err.trailing:
                context.set_trailing_metadata(err.trailing)
            await context.abort(err.code, err.details)

    # -- RPCs ------------------------------------------------------------------------------

    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        return await self._run("Embed", request, context, self._embed)

    def _embed(self, request: pb.EmbedRequest) -> pb.EmbedResponse:
        self._check_model(request.model)
        if 0 < self.max_inputs_per_request < len(request.inputs):
            raise AbortRpc(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{len(request.inputs)} inputs, more than the {self.max_inputs_per_request} allowed",
            )
        self.embed_batch_sizes.append(len(request.inputs))
        prompt = self.prompt_for(request.input_type, request.prompt, request.prompt_name)
        vectors, tokens, truncated = self._embed_texts(
            request.inputs,
            input_type=request.input_type,
            prompt=prompt,
            truncate=request.truncate,
            left=request.truncation_direction == pb.TRUNCATION_DIRECTION_LEFT,
            normalize=request.normalize if request.HasField("normalize") else True,
            dimensions=request.dimensions,
        )
        precision = request.precision or pb.PRECISION_FLOAT32
        out = quantize(vectors, precision)
        encoding = self.encoding_override if self.encoding_override is not None else request.encoding
        if encoding == pb.VECTOR_ENCODING_BYTES:
            little = out.astype(out.dtype.newbyteorder("<"))
            embeddings = [pb.Embedding(data=row.tobytes()) for row in little]
        elif precision == pb.PRECISION_FLOAT32:
            embeddings = [pb.Embedding(values=row.tolist()) for row in out]
        else:
            embeddings = [pb.Embedding(int_values=row.tolist()) for row in out]
        return pb.EmbedResponse(
            embeddings=embeddings,
            dimensions=vectors.shape[1],
            model="fake-mini",
            variant="torch-cpu",
            precision=precision,
            usage=pb.Usage(input_tokens=tokens, truncated_inputs=truncated),
            timings=pb.Timings(queue_ns=1000 * len(request.inputs), inference_ns=5000, total_ns=7000),
        )

    async def EmbedStream(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "the fake pool has no EmbedStream")

    async def Similarity(
        self, request: pb.SimilarityRequest, context: grpc.aio.ServicerContext
    ) -> pb.SimilarityResponse:
        return await self._run("Similarity", request, context, self._similarity)

    def _similarity(self, request: pb.SimilarityRequest) -> pb.SimilarityResponse:
        texts = bool(request.queries or request.documents)
        if texts and (request.query_vectors or request.document_vectors):
            raise AbortRpc(grpc.StatusCode.INVALID_ARGUMENT, "give texts or vectors, not both")
        usage = pb.Usage()
        if texts:
            self._check_model(request.model)
            common = {"truncate": request.truncate, "left": False, "normalize": True}
            q, q_tokens, _ = self._embed_texts(
                request.queries,
                input_type=pb.INPUT_TYPE_QUERY,
                prompt=QUERY_PROMPT,
                dimensions=request.dimensions,
                **common,
            )
            d, d_tokens, _ = self._embed_texts(
                request.documents,
                input_type=pb.INPUT_TYPE_DOCUMENT,
                prompt="",
                dimensions=request.dimensions,
                **common,
            )
            usage = pb.Usage(input_tokens=q_tokens + d_tokens)
        else:
            q = np.array([list(v.values) for v in request.query_vectors], dtype=np.float32)
            d = np.array([list(v.values) for v in request.document_vectors], dtype=np.float32)
            if q.size == 0 or d.size == 0:
                raise AbortRpc(grpc.StatusCode.INVALID_ARGUMENT, "queries and documents must not be empty")
            if q.shape[1] != d.shape[1]:
                raise AbortRpc(grpc.StatusCode.INVALID_ARGUMENT, "vectors of different lengths")
        mode = request.mode or pb.SIMILARITY_MODE_COSINE
        scores = score_matrix(q, d, mode)
        rows = []
        for row in scores:
            if request.top_k:
                order = sorted(range(len(row)), key=lambda i: (-row[i], i))[: request.top_k]
                rows.append(
                    pb.SimilarityRow(ranked=[pb.ScoredDocument(index=i, score=row[i]) for i in order])
                )
            else:
                rows.append(pb.SimilarityRow(scores=row.tolist()))
        return pb.SimilarityResponse(
            rows=rows,
            mode=mode,
            model="fake-mini" if texts else "",
            variant="torch-cpu" if texts else "",
            usage=usage,
        )

    async def ListModels(
        self, request: pb.ListModelsRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListModelsResponse:
        return await self._run(
            "ListModels",
            request,
            context,
            lambda _: pb.ListModelsResponse(models=[self.model_info()], default_model="fake-mini"),
        )

    async def GetModel(
        self, request: pb.GetModelRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetModelResponse:
        def handle(req: pb.GetModelRequest) -> pb.GetModelResponse:
            if req.model not in ("", "fake-mini"):
                raise AbortRpc(grpc.StatusCode.NOT_FOUND, f"unknown model {req.model!r}; known: fake-mini")
            return pb.GetModelResponse(model=self.model_info())

        return await self._run("GetModel", request, context, handle)

    async def CountTokens(
        self, request: pb.CountTokensRequest, context: grpc.aio.ServicerContext
    ) -> pb.CountTokensResponse:
        def handle(req: pb.CountTokensRequest) -> pb.CountTokensResponse:
            self._check_model(req.model)
            if not req.inputs:
                raise AbortRpc(grpc.StatusCode.INVALID_ARGUMENT, "inputs must not be empty")
            if 0 < self.max_inputs_per_request < len(req.inputs):
                raise AbortRpc(grpc.StatusCode.INVALID_ARGUMENT, "too many inputs")
            prompt = self.prompt_for(req.input_type, req.prompt, req.prompt_name)
            return pb.CountTokensResponse(
                token_counts=[count_tokens(prompt + t) for t in req.inputs],
                max_input_tokens=MAX_TOKENS,
                model="fake-mini",
            )

        return await self._run("CountTokens", request, context, handle)

    def _check_model(self, selector: pb.ModelSelector) -> None:
        if selector.model not in ("", "fake-mini"):
            raise AbortRpc(grpc.StatusCode.NOT_FOUND, f"unknown model {selector.model!r}; known: fake-mini")
        if selector.variant not in ("", "torch-cpu", "onnx-cpu"):
            raise AbortRpc(grpc.StatusCode.NOT_FOUND, f"model fake-mini has no variant {selector.variant!r}")

    def model_info(self) -> pb.ModelInfo:
        return pb.ModelInfo(
            name="fake-mini",
            source="tests/fakes.py",
            dimensions=DIMS,
            max_input_tokens=MAX_TOKENS,
            prompts=MODEL_PROMPTS,
            query_prompt_name="query",
            document_prompt_name="",
            default_similarity=pb.SIMILARITY_MODE_COSINE,
            variants=[
                pb.VariantInfo(
                    name="torch-cpu",
                    backend=pb.BACKEND_TORCH,
                    device=pb.DEVICE_CPU,
                    dtype="float32",
                    dimensions=DIMS,
                    is_default=True,
                ),
                pb.VariantInfo(
                    name="onnx-cpu",
                    backend=pb.BACKEND_ONNX,
                    device=pb.DEVICE_CPU,
                    dtype="qint8",
                    dimensions=DIMS,
                ),
            ],
            limits=pb.Limits(
                max_inputs_per_request=self.max_inputs_per_request,
                max_message_bytes=4 * 1024 * 1024,
                max_input_tokens=MAX_TOKENS,
            ),
            is_default=True,
        )


MODEL_PROMPTS = {"query": QUERY_PROMPT, "title": "title: "}


def score_matrix(q: np.ndarray, d: np.ndarray, mode: int) -> np.ndarray:
    """LlamaIndex's math over all pairs (float64), higher is more similar."""
    q64, d64 = q.astype(np.float64), d.astype(np.float64)
    if mode == pb.SIMILARITY_MODE_DOT_PRODUCT:
        return q64 @ d64.T
    if mode == pb.SIMILARITY_MODE_EUCLIDEAN:
        return -np.linalg.norm(q64[:, None, :] - d64[None, :, :], axis=-1)
    norms = np.linalg.norm(q64, axis=1)[:, None] * np.linalg.norm(d64, axis=1)[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(norms == 0, 0.0, (q64 @ d64.T) / np.where(norms == 0, 1, norms))


class FakePoolServer:
    """A grpc.aio server for a FakeServicer on 127.0.0.1, in its own thread and event loop."""

    def __init__(
        self,
        servicer: FakeServicer | None = None,
        *,
        server_credentials: grpc.ServerCredentials | None = None,
    ) -> None:
        self.servicer = servicer or FakeServicer()
        self._credentials = server_credentials
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-pool", daemon=True)
        self._server: grpc.aio.Server | None = None
        self.port = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakePoolServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)
        return self

    async def _start(self) -> None:
        server = grpc.aio.server()
        pb_grpc.add_EmbeddingServiceServicer_to_server(self.servicer, server)
        if self._credentials is None:
            self.port = server.add_insecure_port("127.0.0.1:0")
        else:
            self.port = server.add_secure_port("127.0.0.1:0", self._credentials)
        await server.start()
        self._server = server

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(None), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> FakePoolServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
