"""The one fake pool of the unit tests: the real RouterCore and gRPC front over a fake model.

Everything a caller reaches is the pool's own code: the gRPC front (grpc_server.py, with
TokenAuth, TLS and the error adapter fronts/outcome.py), the service core (validation,
model resolution, batching, merging, scoring). Only the model replicas are faked: a
``FakeBackend`` stands where the direct channel or a Ray handle would (a VariantBackend).

The fake model is deterministic: a text's raw vector is a hash-seeded normal vector, so a
test computes what the pool answers with ``expected`` (or ``vector`` for a plain document),
and can tell whose answer is whose. Like a real replica it puts prompts before the texts,
counts tokens (words + 2), truncates or refuses over-long inputs, and does the Matryoshka
dimensions, normalization and precision of each request.

A test can script failures (``FakeBackend.fail_next``: the pool's own errors, which the
front maps to statuses), slow the model down (``delay``), and read what reached the pool:
the requests the front handed the core (``RecordingCore.calls``), each call's metadata
(``RecordingAuth.metadata``) and the batches the model ran (``FakeBackend.batches``).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import Message

from embedpool.server.config.catalogue import Catalogue
from embedpool.server.errors import EmbedpoolError, InvalidArgument
from embedpool.server.fronts import grpc_server as grpc_front
from embedpool.server.fronts.auth import TokenAuth
from embedpool.server.fronts.outcome import CountFn, no_count
from embedpool.server.service.core import Call, RouterCore
from embedpool.server.types import (
    EmbedAnswer,
    EmbedItem,
    EmbedOutput,
    EmbedRequest,
    InputType,
    Precision,
    VariantDescription,
)
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.net import free_port

MODEL = "fake"
VARIANT = "custom-cpu"  # the default variant
OTHER_VARIANT = "onnx-cpu"  # a second variant (backend onnx), served by the same fake model
DEPLOYMENT = f"{MODEL}--{VARIANT}"
DEPLOYMENTS = (DEPLOYMENT, f"{MODEL}--{OTHER_VARIANT}")

DIMS = 16
MAX_TOKENS = 32
SPECIAL_TOKENS = 2
PROMPTS = {"query": "query: ", "title": "title: "}
QUERY_PROMPT_NAME = "query"
QUEUE_NS_PER_TEXT = 1000  # the fake replica's timings: queue_ns grows with the request's size
INFERENCE_NS = 5000


# ---- the fake model ------------------------------------------------------------------------------


def raw_vector(text: str) -> np.ndarray:
    """The fake model's raw float32 vector for a text as the model sees it (prompted, truncated)."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(DIMS).astype(np.float32)


def count_tokens(text: str) -> int:
    """Tokens of a text as the fake model counts them: words plus start and end tokens."""
    return len(text.split()) + SPECIAL_TOKENS


def prompt_for(input_type: InputType, prompt: str | None = None, prompt_name: str | None = None) -> str:
    """The prompt put before each text: explicit, named, or the query prompt for queries."""
    if prompt is not None:
        return prompt
    if prompt_name:
        if prompt_name not in PROMPTS:
            raise InvalidArgument(
                f"unknown prompt_name {prompt_name!r} for model {MODEL!r}; its prompts: "
                + ", ".join(sorted(PROMPTS))
            )
        return PROMPTS[prompt_name]
    return PROMPTS[QUERY_PROMPT_NAME] if input_type == "query" else ""


def quantize(vector: np.ndarray, precision: Precision) -> np.ndarray:
    """The fake model's precisions: int8/uint8 scaled from [-1, 1], binary ones packed bits."""
    if precision == "int8":
        return np.clip(np.round(vector * 127), -128, 127).astype(np.int8)
    if precision == "uint8":
        return np.clip(np.round((vector + 1) * 127.5), 0, 255).astype(np.uint8)
    if precision == "binary":
        return (np.packbits(vector > 0, axis=-1).astype(np.int16) - 128).astype(np.int8)
    if precision == "ubinary":
        return np.packbits(vector > 0, axis=-1)
    return vector.astype(np.float32)


def finish(
    text: str, dimensions: int = 0, normalize: bool = True, precision: Precision = "float32"
) -> np.ndarray:
    """One row of an answer: the text's raw vector cut to ``dimensions``, normalized, quantized."""
    row = raw_vector(text)[: dimensions or DIMS]
    if normalize:
        row = row / np.linalg.norm(row)
    return quantize(row, precision)


def vector(text: str) -> np.ndarray:
    """What the pool answers for a short document with every option at its default."""
    return finish(text)


def expected(
    texts: Sequence[str],
    *,
    input_type: InputType = "document",
    prompt: str | None = None,
    prompt_name: str | None = None,
    normalize: bool = True,
    dimensions: int = 0,
    precision: Precision = "float32",
) -> np.ndarray:
    """What the pool answers for short texts (none truncated), one row per text."""
    before = prompt_for(input_type, prompt, prompt_name)
    return np.stack([finish(before + t, dimensions, normalize, precision) for t in texts])


def _fit(text: str, left: bool) -> str:
    words = text.split()
    keep = MAX_TOKENS - SPECIAL_TOKENS
    return " ".join(words[-keep:] if left else words[:keep])


def embed_item(item: EmbedItem) -> EmbedOutput | EmbedpoolError:
    """One request's answer from the fake model, or the error that concerns only it."""
    try:
        before = prompt_for(item.input_type, item.prompt, item.prompt_name)
    except InvalidArgument as err:
        return err
    rows, tokens, truncated = [], 0, 0
    for i, text in enumerate(item.texts):
        full = before + text
        n = count_tokens(full)
        if n > MAX_TOKENS:
            if not item.truncate:
                return InvalidArgument(
                    f"input {i} has {n} tokens; the model's limit is {MAX_TOKENS} (prompt included). "
                    "Set truncate=true or shorten it."
                )
            full, n, truncated = _fit(full, item.truncate_left), MAX_TOKENS, truncated + 1
        tokens += n
        rows.append(finish(full, item.dimensions, item.normalize, item.precision))
    return EmbedOutput(
        vectors=np.stack(rows),
        dimensions=item.dimensions or DIMS,
        input_tokens=tokens,
        truncated=truncated,
        queue_ns=QUEUE_NS_PER_TEXT * len(item.texts),
        inference_ns=INFERENCE_NS,
    )


class FakeBackend:
    """A VariantBackend over the fake model: answers at once (or after ``delay``).

    It records every batch it is sent (``batches``; ``seen`` is their texts) and fails as
    scripted: each of the next batches with one error of ``fail_next``, every batch with
    ``fail_with``. A batch picks its failure when it arrives, so a batch still sleeping out
    the delay of an abandoned call does not take the failure meant for the next one.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.fail_with: Exception | None = None
        self.failures: list[Exception] = []
        self.batches: list[list[EmbedItem]] = []
        self.seen: list[str] = []

    def fail_next(self, *errors: Exception) -> None:
        """Fail the next ``len(errors)`` batches, one error each, in order."""
        self.failures.extend(errors)

    @property
    def items(self) -> list[EmbedItem]:
        """Every request (or chunk of one) the model embedded, in arrival order."""
        return [item for batch in self.batches for item in batch]

    async def embed(self, items: list[EmbedItem]) -> list[EmbedOutput | EmbedpoolError]:
        self.batches.append(list(items))
        self.seen += [t for item in items for t in item.texts]
        failure = self.failures.pop(0) if self.failures else self.fail_with
        if self.delay:
            await asyncio.sleep(self.delay)
        if failure is not None:
            raise failure
        return [embed_item(item) for item in items]

    async def describe(self) -> VariantDescription:
        return VariantDescription(
            dimensions=DIMS,
            max_input_tokens=MAX_TOKENS,
            dtype="float32",
            prompts=dict(PROMPTS),
            query_prompt_name=QUERY_PROMPT_NAME,
        )

    async def count_tokens(
        self, texts: list[str], input_type: InputType, prompt: str | None, prompt_name: str | None
    ) -> list[int]:
        before = prompt_for(input_type, prompt, prompt_name)
        return [count_tokens(before + t) for t in texts]

    async def ping(self) -> None:
        return None


# ---- the real service over it ---------------------------------------------------------------------


def catalogue(
    max_inputs: int = 8, max_queued: int = 16, max_message_bytes: int = 4 * 1024 * 1024
) -> Catalogue:
    return Catalogue.model_validate(
        {
            "default_model": MODEL,
            "limits": {
                "max_inputs_per_request": max_inputs,
                "max_queued_requests": max_queued,
                "max_message_bytes": max_message_bytes,
            },
            "models": [
                {
                    "name": MODEL,
                    "source": "tests/unit/fake_backend.py",
                    "variants": [
                        {"name": VARIANT, "backend": "custom", "class_path": "x:Y"},
                        {"name": OTHER_VARIANT, "backend": "onnx"},
                    ],
                }
            ],
        }
    )


class RecordingCore(RouterCore):
    """The real RouterCore; it also keeps each request a front handed it, in arrival order
    (``calls``: (method, request); an Embed is the pool's own EmbedRequest, as every front
    hands it over, and an EmbedStream's requests count as Embed calls)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, Message | EmbedRequest]] = []

    def calls_of(self, method: str) -> list[Any]:
        """The requests of one method (EmbedRequest for "Embed", ...), in arrival order."""
        return [request for name, request in self.calls if name == method]

    async def embed(
        self, req: EmbedRequest, deadline: float | None = None, call: Call | None = None
    ) -> EmbedAnswer:
        self.calls.append(("Embed", req))
        return await super().embed(req, deadline, call)

    async def similarity(
        self, req: pb.SimilarityRequest, deadline: float | None = None, call: Call | None = None
    ) -> pb.SimilarityResponse:
        self.calls.append(("Similarity", req))
        return await super().similarity(req, deadline, call)

    async def list_models(self, req: pb.ListModelsRequest) -> pb.ListModelsResponse:
        self.calls.append(("ListModels", req))
        return await super().list_models(req)

    async def get_model(self, req: pb.GetModelRequest, call: Call | None = None) -> pb.GetModelResponse:
        self.calls.append(("GetModel", req))
        return await super().get_model(req, call)

    async def count_tokens(
        self, req: pb.CountTokensRequest, call: Call | None = None
    ) -> pb.CountTokensResponse:
        self.calls.append(("CountTokens", req))
        return await super().count_tokens(req, call)


class RecordingAuth(TokenAuth):
    """The real TokenAuth (no tokens: auth off); it also keeps each call's text metadata."""

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        super().__init__(tokens)
        self.metadata: list[dict[str, str]] = []

    def check(self, metadata: Iterable[tuple[str, str | bytes]]) -> None:
        pairs = list(metadata)
        self.metadata.append({k: v for k, v in pairs if isinstance(v, str)})
        super().check(pairs)


async def fill_slots(core: RouterCore) -> list[asyncio.Future[EmbedOutput]]:
    """Calls that hold every slot to the default variant's (slow) replicas: what comes next
    waits in the queue, and leaves with whatever else queued meanwhile."""
    dispatcher = core.dispatchers[DEPLOYMENT]
    blockers = [
        asyncio.ensure_future(dispatcher.submit(EmbedItem([f"blocker {i}"])))
        for i in range(dispatcher.max_in_flight)
    ]
    await asyncio.sleep(0.05)
    return blockers


def make_core(backend: FakeBackend, **limits: int) -> RecordingCore:
    """The real core over ``backend`` for every variant of the fake catalogue."""
    return RecordingCore(catalogue(**limits), dict.fromkeys(DEPLOYMENTS, backend))


@asynccontextmanager
async def serving(
    backend: FakeBackend | None = None,
    *,
    auth: TokenAuth | None = None,
    count: CountFn = no_count,
    tls: tuple[bytes, bytes] | None = None,
    **limits: int,
) -> AsyncIterator[tuple[str, RecordingCore, FakeBackend]]:
    """The real grpc_front server over a RouterCore with a FakeBackend, on loopback.

    ``tls`` is (private key, certificate chain) in PEM; ``limits`` go to the catalogue."""
    backend = backend or FakeBackend()
    core = make_core(backend, **limits)
    port = free_port()
    key, chain = tls if tls is not None else (None, None)
    server, health = await grpc_front.start_server(
        core, port, host="127.0.0.1", auth=auth, count=count, tls_cert_chain=chain, tls_private_key=key
    )
    await grpc_front.set_health(health, grpc_front.health_statuses(core, dict.fromkeys(DEPLOYMENTS, True)))
    try:
        yield f"127.0.0.1:{port}", core, backend
    finally:
        await server.stop(None)


@asynccontextmanager
async def serving_servicer(servicer: pb_grpc.EmbeddingServiceServicer) -> AsyncIterator[str]:
    """A bare grpc.aio server for one purpose-built servicer (a status the pool never sends,
    a pool that answers differently), on loopback. Yields its target."""
    server = grpc.aio.server()
    pb_grpc.add_EmbeddingServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


class ProxyContext:
    """What RayServegRPCContext offers the Router's methods."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self.metadata = metadata
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.trailers: list[tuple[str, str]] = []

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def set_trailing_metadata(self, trailers: list[tuple[str, str]]) -> None:
        self.trailers = trailers
