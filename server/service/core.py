"""The pool's front: validates, resolves the model variant, batches, merges.

Plain asyncio with no Ray import: `VariantBackend` is how it reaches a model
variant (the direct channel or a Ray deployment handle in the pool, a fake in unit
tests). Every front calls into this and passes a `Call` of its own, which the core
fills with what the request resolved to; the front counts the call from it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from embedpool.server.errors import InvalidArgument
from embedpool.server.service import messages as convert
from embedpool.server.service.backend import VariantBackend
from embedpool.server.service.batching import Dispatcher
from embedpool.server.service.scoring import score_matrix
from embedpool.server.service.validation import (
    check_choice,
    check_dimensions,
    check_embed,
    check_name,
    check_texts,
)
from embedpool.server.types import (
    EmbedAnswer,
    EmbedItem,
    EmbedRequest,
    InputType,
    ModelChoice,
    SimilarityName,
    VariantDescription,
)
from embedpool.v1 import embedding_service_pb2 as pb

if TYPE_CHECKING:
    from embedpool.server.config.catalogue import Catalogue, ModelConfig, VariantConfig

log = logging.getLogger("embedpool")


@dataclass(slots=True)
class Call:
    """One call's tags for the request counter. The front that counts the call makes it; the
    core writes the model and variant the request resolved to (empty until it resolves)."""

    method: str
    front: str = "grpc"
    model: str = ""
    variant: str = ""


# One EmbedStream request as a front hands it over: its id and the request, or the
# exception that converting it raised (that request's answer, not the stream's end).
StreamRequest = tuple[str, "EmbedRequest | Exception"]
# One EmbedStream request's answer: its id, the answer or the exception that ended it, its tags.
StreamAnswer = tuple[str, "EmbedAnswer | Exception", Call]


class RouterCore:
    def __init__(
        self, catalogue: Catalogue, backends: dict[str, VariantBackend], max_in_flight: int = 2
    ) -> None:
        self.catalogue = catalogue
        self.backends = backends
        self.limits = catalogue.limits
        self.dispatchers: dict[str, Dispatcher] = {}
        self._descriptions: dict[str, VariantDescription] = {}
        self._describing: dict[str, asyncio.Task[VariantDescription]] = {}
        for model in catalogue.models:
            for variant in model.variants:
                name = catalogue.deployment_name(model.name, variant.name)
                backend = backends[name]
                self.dispatchers[name] = Dispatcher(
                    backend.embed,
                    max_batch_texts=variant.batching.max_batch_size,
                    max_in_flight=max(max_in_flight, max_in_flight * variant.autoscaling.max_replicas),
                    max_queued_requests=catalogue.limits.max_queued_requests,
                    max_batch_tokens=variant.batching.max_batch_tokens,
                    name=name,
                )

    # ---- resolution -------------------------------------------------------

    def resolve(
        self, choice: ModelChoice, call: Call | None = None
    ) -> tuple[ModelConfig, VariantConfig, str]:
        check_choice(choice)
        m, v = self.catalogue.resolve(choice.model, choice.variant, choice.backend, choice.device)
        if call is not None:
            call.model, call.variant = m.name, v.name or ""
        return m, v, self.catalogue.deployment_name(m.name, v.name)

    async def description(self, deployment: str) -> VariantDescription:
        """The variant's dimensions and limits, asked of a replica once and kept."""
        if deployment in self._descriptions:
            return self._descriptions[deployment]
        task = self._describing.get(deployment)
        if task is None or (task.done() and task.exception() is not None):
            task = asyncio.ensure_future(self.backends[deployment].describe())
            self._describing[deployment] = task
        desc = await asyncio.shield(task)
        self._descriptions[deployment] = desc
        return desc

    # ---- Embed --------------------------------------------------------------

    async def embed(
        self, request: EmbedRequest, deadline: float | None = None, call: Call | None = None
    ) -> EmbedAnswer:
        arrived = time.monotonic_ns()
        m, v, name = self.resolve(request.choice, call)
        item = replace(request.item, arrived_ns=time.time_ns())
        check_embed(item, self.limits.max_inputs_per_request)
        desc = await self.description(name)
        check_dimensions(item.dimensions, desc.dimensions)
        out = await self.dispatchers[name].submit(item, deadline)
        return EmbedAnswer(out, m.name, v.name or "", time.monotonic_ns() - arrived, request.encoding)

    async def embed_stream(
        self,
        requests: AsyncIterator[StreamRequest],
        deadline: float | None = None,
        front: str = "grpc",
    ) -> AsyncIterator[StreamAnswer]:
        """Answer each request as it completes; one failure ends only that request (its
        exception is the answer, for the front to turn into a status and count).

        At most `limits.max_queued_requests` requests of a stream are in flight or answered
        but not yet sent: past that, the stream stops reading until the client reads (HTTP/2
        flow control then holds the client back), so a client that writes without reading
        cannot grow the router's memory.

        An exception from reading the requests (a frame the front could not parse, say)
        ends the stream: the answers already made are yielded, then it is raised here, in
        the caller's task, for the front to turn into the call's status.
        """
        done: asyncio.Queue[StreamAnswer | None] = asyncio.Queue()
        tasks: set[asyncio.Task[None]] = set()
        window = asyncio.Semaphore(self.limits.max_queued_requests)

        async def one(request_id: str, request: EmbedRequest | Exception) -> None:
            call = Call("EmbedStream", front)
            try:
                if isinstance(request, Exception):
                    raise request
                await done.put((request_id, await self.embed(request, deadline, call), call))
            except Exception as exc:  # every request gets an answer, an unexpected failure too
                await done.put((request_id, exc, call))

        async def pump() -> None:
            try:
                async for msg in requests:
                    await window.acquire()
                    task = asyncio.ensure_future(one(*msg))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                if tasks:
                    await asyncio.gather(*list(tasks), return_exceptions=True)
            finally:
                await done.put(None)

        reader = asyncio.ensure_future(pump())
        try:
            while (resp := await done.get()) is not None:
                yield resp
                window.release()
            await reader
        finally:
            reader.cancel()
            for task in list(tasks):
                task.cancel()

    # ---- Similarity -------------------------------------------------------

    async def similarity(
        self, req: pb.SimilarityRequest, deadline: float | None = None, call: Call | None = None
    ) -> pb.SimilarityResponse:
        convert.enum_value(convert.MODES, req.mode, "mode", "SimilarityMode")
        mode = convert.MODES[req.mode]
        has_texts = bool(req.queries or req.documents)
        has_vectors = bool(req.query_vectors or req.document_vectors)
        if has_texts and has_vectors:
            raise InvalidArgument(
                "give texts (queries, documents) or vectors (query_vectors, document_vectors), not both"
            )
        limit = self.limits.max_inputs_per_request
        if has_vectors:
            # Up to a message's worth of floats: off the event loop, which keeps serving meanwhile.
            return await asyncio.get_running_loop().run_in_executor(None, _score_vectors, req, mode, limit)
        check_texts(req.queries, "queries", limit)
        check_texts(req.documents, "documents", limit)
        m, v, name = self.resolve(convert.model_choice(req), call)
        desc = await self.description(name)
        check_dimensions(req.dimensions, desc.dimensions)
        arrived = time.time_ns()

        def item(texts: list[str], input_type: InputType) -> EmbedItem:
            return EmbedItem(
                texts=texts,
                input_type=input_type,
                truncate=req.truncate,
                dimensions=req.dimensions,
                arrived_ns=arrived,
            )

        dispatcher = self.dispatchers[name]
        qo, do = await asyncio.gather(
            dispatcher.submit(item(list(req.queries), "query"), deadline),
            dispatcher.submit(item(list(req.documents), "document"), deadline),
        )
        scores = score_matrix(qo.vectors, do.vectors, mode)
        return pb.SimilarityResponse(
            rows=convert.similarity_rows(scores, req.top_k),
            mode=convert.MODE_ENUM[mode],
            model=m.name,
            variant=v.name,
            usage=pb.Usage(
                input_tokens=qo.input_tokens + do.input_tokens, truncated_inputs=qo.truncated + do.truncated
            ),
        )

    # ---- Models and tokens ------------------------------------------------

    async def model_info(self, m: ModelConfig) -> pb.ModelInfo:
        default_variant = self.catalogue.resolve(m.name, "", None, None)[1]
        names = {v.name: self.catalogue.deployment_name(m.name, v.name) for v in m.variants}
        # Describing a scale-to-zero variant would start a replica (a GPU node, say) just to
        # answer ListModels: use what is known, and ask only always-on or default variants.
        asked = [
            v
            for v in m.variants
            if names[v.name] in self._descriptions
            or v.autoscaling.min_replicas > 0
            or v.name == default_variant.name
        ]
        descs = dict(
            zip(
                [v.name for v in asked],
                await asyncio.gather(*(self.description(names[v.name]) for v in asked)),
                strict=True,
            )
        )
        first = descs[default_variant.name]
        variants = []
        for v in m.variants:
            desc = descs.get(v.name, first)
            described = descs.get(v.name)
            # An auto variant's backend is what its replica chose; unknown until one has loaded.
            backend = described.backend if described is not None and described.backend else v.backend
            variants.append(
                pb.VariantInfo(
                    name=v.name,
                    backend=convert.BACKEND_ENUM.get(backend, pb.BACKEND_UNSPECIFIED),  # type: ignore[call-overload]
                    device=convert.DEVICE_ENUM[v.device],
                    dtype=desc.dtype if described is not None else v.dtype,
                    dimensions=desc.dimensions,
                    is_default=v.name == default_variant.name,
                    backend_reason=described.backend_reason if described is not None else "",
                    min_cosine_to_fp32=described.min_cosine_to_fp32 if described is not None else 0.0,
                    cpu_features=described.cpu_features if described is not None else (),
                )
            )
        return pb.ModelInfo(
            name=m.name,
            source=m.source,
            dimensions=first.dimensions,
            max_input_tokens=first.max_input_tokens,
            prompts=first.prompts,
            query_prompt_name=first.query_prompt_name or "",
            document_prompt_name=first.document_prompt_name or "",
            default_similarity=convert.MODE_ENUM[first.similarity],
            variants=variants,
            limits=pb.Limits(
                max_inputs_per_request=self.limits.max_inputs_per_request,
                max_message_bytes=self.limits.max_message_bytes,
                max_input_tokens=first.max_input_tokens,
            ),
            is_default=m.name == self.catalogue.default_model_name,
        )

    async def list_models(self, req: pb.ListModelsRequest) -> pb.ListModelsResponse:
        default = self.catalogue.default_model_name
        models = sorted(self.catalogue.models, key=lambda m: m.name != default)
        infos = await asyncio.gather(*(self.model_info(m) for m in models))
        return pb.ListModelsResponse(models=infos, default_model=default)

    async def get_model(self, req: pb.GetModelRequest, call: Call | None = None) -> pb.GetModelResponse:
        check_name(req.model, "model")
        m, _ = self.catalogue.resolve(req.model, "", None, None)
        if call is not None:
            call.model = m.name
        return pb.GetModelResponse(model=await self.model_info(m))

    async def count_tokens(
        self, req: pb.CountTokensRequest, call: Call | None = None
    ) -> pb.CountTokensResponse:
        m, _, name = self.resolve(convert.model_choice(req), call)
        check_texts(req.inputs, "inputs", self.limits.max_inputs_per_request)
        convert.enum_value(convert.INPUT_TYPES, req.input_type, "input_type", "InputType")
        if req.prompt and req.prompt_name:
            raise InvalidArgument("set at most one of prompt and prompt_name")
        check_name(req.prompt_name, "prompt_name")
        desc = await self.description(name)
        counts = await self.backends[name].count_tokens(
            list(req.inputs), convert.INPUT_TYPES[req.input_type], req.prompt or None, req.prompt_name or None
        )
        return pb.CountTokensResponse(
            token_counts=counts, max_input_tokens=desc.max_input_tokens, model=m.name
        )

    # ---- health -----------------------------------------------------------

    async def variant_health(self, timeout_s: float = 5.0) -> dict[str, bool]:
        """deployment name -> whether a replica answered a ping in time.

        Scale-to-zero variants (min_replicas 0) are not pinged, since a ping is a request
        that would keep a replica up; they count as up: a call starts one on demand.
        """

        async def ok(backend: VariantBackend) -> bool:
            try:
                await asyncio.wait_for(backend.ping(), timeout_s)
                return True
            except (Exception, asyncio.TimeoutError):
                return False

        on_demand = {
            self.catalogue.deployment_name(m.name, v.name)
            for m in self.catalogue.models
            for v in m.variants
            if v.autoscaling.min_replicas == 0
        }
        names = [n for n in self.backends if n not in on_demand]
        results = await asyncio.gather(*(ok(self.backends[n]) for n in names))
        return dict(zip(names, results, strict=True)) | dict.fromkeys(on_demand, True)


def _score_vectors(req: pb.SimilarityRequest, mode: SimilarityName, limit: int) -> pb.SimilarityResponse:
    q = convert.vectors(req.query_vectors, "query_vectors", limit)
    d = convert.vectors(req.document_vectors, "document_vectors", limit)
    if q.shape[1] != d.shape[1]:
        raise InvalidArgument(
            f"query_vectors have {q.shape[1]} dimensions but document_vectors have {d.shape[1]}"
        )
    return pb.SimilarityResponse(
        rows=convert.similarity_rows(score_matrix(q, d, mode), req.top_k),
        mode=req.mode or pb.SIMILARITY_MODE_COSINE,
    )
