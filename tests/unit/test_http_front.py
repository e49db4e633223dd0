"""The OpenAI-compatible HTTP front over the real core, served by uvicorn on loopback and
called with the official `openai` SDK (and httpx for what the SDK cannot send).

Only the model is faked (FakeBackend), so every status the pool can answer is reachable:
the live pool's own tests are in tests/integration/test_http.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import httpx
import numpy as np
import openai
import pytest

from embedpool.server import errors
from embedpool.server.fronts import grpc_server as grpc_front
from embedpool.server.fronts.auth import TokenAuth
from embedpool.server.fronts.http_server import HttpServer, start_http_server
from embedpool.server.service.core import Call
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.net import free_port
from tests.unit.fake_backend import (
    DIMS,
    MAX_TOKENS,
    MODEL,
    OTHER_VARIANT,
    FakeBackend,
    RecordingCore,
    expected,
    fill_slots,
    make_core,
)

# The servers run on the fixture's loop (the session's): the tests must run there too.
pytestmark = pytest.mark.asyncio(loop_scope="session")
DOCS = ["the red planet is mars", "water boils at 100 degrees", "a pool serves models"]


@dataclass
class Front:
    url: str
    grpc_target: str
    core: RecordingCore
    backend: FakeBackend
    counted: list[tuple[str, str, str]] = field(default_factory=list)  # (front, method, code)
    up: list[bool] = field(default_factory=lambda: [True])

    def sdk(self, token: str = "unused", **kwargs: object) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.url}/v1", api_key=token, max_retries=0, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
async def front() -> AsyncIterator[Front]:
    async with running() as f:
        yield f


class running:
    """Both fronts, gRPC and HTTP, over one core (as in a Router replica)."""

    def __init__(self, backend: FakeBackend | None = None, tokens: list[str] | None = None, **limits: int):
        self.backend = backend or FakeBackend()
        self.tokens = tokens or []
        self.limits = limits

    async def __aenter__(self) -> Front:
        core = make_core(self.backend, **self.limits)
        http_port, grpc_port = free_port(), free_port()
        self.front = f = Front(f"http://127.0.0.1:{http_port}", f"127.0.0.1:{grpc_port}", core, self.backend)

        def count(call: Call, code: str) -> None:
            f.counted.append((call.front, call.method, code))

        auth = TokenAuth(self.tokens)
        self.grpc, _ = await grpc_front.start_server(
            core, grpc_port, host="127.0.0.1", auth=auth, count=count
        )
        self.http: HttpServer = await start_http_server(
            core, http_port, host="127.0.0.1", auth=auth, count=count, healthy=lambda: f.up[0]
        )
        return f

    async def __aexit__(self, *exc: object) -> None:
        await self.http.stop(1)
        await self.grpc.stop(None)


def decode(b64: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(b64), dtype="<f4")


# -- answers -----------------------------------------------------------------------------


async def test_float_and_base64_answers_are_the_pools_vectors_in_order(front: Front) -> None:
    sdk = front.sdk()
    floats = await sdk.embeddings.create(model=MODEL, input=DOCS, encoding_format="float")
    default = await sdk.embeddings.create(model=MODEL, input=DOCS)  # the SDK asks for base64
    want = expected(DOCS)
    assert [d.index for d in floats.data] == [0, 1, 2]
    np.testing.assert_allclose(np.array([d.embedding for d in floats.data]), want, rtol=1e-6)
    np.testing.assert_allclose(np.array([d.embedding for d in default.data]), want, rtol=1e-6)
    tokens = sum(len(t.split()) + 2 for t in DOCS)
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == tokens
    assert floats.object == "list" and floats.model == MODEL
    assert {d.object for d in floats.data} == {"embedding"}


async def test_the_answer_has_openais_fields_exactly(front: Front) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{front.url}/v1/embeddings", json={"input": "one", "encoding_format": "base64"})
    body = r.json()
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert set(body) == {"object", "data", "model", "usage"}
    assert set(body["data"][0]) == {"object", "index", "embedding"}
    assert set(body["usage"]) == {"prompt_tokens", "total_tokens"}
    assert body["model"] == MODEL  # no model asked: the default one, named
    np.testing.assert_allclose(decode(body["data"][0]["embedding"]), expected(["one"])[0], rtol=1e-6)


async def test_dimensions_variant_and_extensions(front: Front) -> None:
    sdk = front.sdk()
    got = await sdk.embeddings.create(
        model=f"{MODEL}/{OTHER_VARIANT}",
        input="what is a pool?",
        dimensions=8,
        extra_body={"input_type": "query", "normalize": False},
    )
    assert got.model == f"{MODEL}/{OTHER_VARIANT}"
    np.testing.assert_allclose(
        got.data[0].embedding,
        expected(["what is a pool?"], input_type="query", dimensions=8, normalize=False)[0],
        rtol=1e-6,
    )
    (item,) = front.backend.items
    assert (item.dimensions, item.input_type, item.normalize) == (8, "query", False)
    long = " ".join(["word"] * (MAX_TOKENS * 2))
    cut = await sdk.embeddings.create(model=MODEL, input=[long], extra_body={"truncate": True})
    assert cut.usage.prompt_tokens == MAX_TOKENS


async def test_odd_unicode_and_nul_are_embedded(front: Front) -> None:
    texts = ["nul\x00inside", "emoji 🧪🚀", "rtl שלום עולם", "combining e\u0301", "\u200b zero width", "中文"]
    got = await front.sdk().embeddings.create(model=MODEL, input=texts, encoding_format="float")
    np.testing.assert_allclose(np.array([d.embedding for d in got.data]), expected(texts), rtol=1e-6)


async def test_http_and_grpc_requests_join_the_same_batch(front: Front) -> None:
    front.backend.delay = 0.3
    blockers = await fill_slots(front.core)
    async with grpc.aio.insecure_channel(front.grpc_target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        over_grpc = stub.Embed(pb.EmbedRequest(inputs=["from grpc"]), timeout=10)
        over_http = front.sdk().embeddings.create(model=MODEL, input="from http", encoding_format="float")
        g, h = await asyncio.gather(over_grpc, over_http)
        await asyncio.gather(*blockers)
    np.testing.assert_allclose(g.embeddings[0].values, expected(["from grpc"])[0], rtol=1e-6)
    np.testing.assert_allclose(h.data[0].embedding, expected(["from http"])[0], rtol=1e-6)
    merged = [
        b for b in front.backend.batches if {"from grpc", "from http"} <= {t for i in b for t in i.texts}
    ]
    assert len(merged) == 1, [[i.texts for i in b] for b in front.backend.batches]
    assert ("http", "Embed", "OK") in front.counted and ("grpc", "Embed", "OK") in front.counted


async def test_a_client_that_disconnects_cancels_its_queued_work(front: Front) -> None:
    front.backend.delay = 0.5
    blockers = await fill_slots(front.core)
    with pytest.raises(openai.APITimeoutError):
        await front.sdk(timeout=0.2).embeddings.create(model=MODEL, input="given up on")
    await asyncio.gather(*blockers)
    await asyncio.sleep(0.1)
    assert "given up on" not in front.backend.seen  # dropped from the queue, never embedded
    assert ("http", "Embed", "CANCELLED") in front.counted
    ok = await front.sdk().embeddings.create(model=MODEL, input="still answering")
    assert len(ok.data) == 1


# -- errors, in OpenAI's envelope and the SDK's own exceptions --------------------------


async def post(
    front: Front, body: bytes | dict[str, object], headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        if isinstance(body, dict):
            return await http.post(f"{front.url}/v1/embeddings", json=body, headers=headers)
        return await http.post(
            f"{front.url}/v1/embeddings",
            content=body,
            headers={"content-type": "application/json", **(headers or {})},
        )


def envelope(r: httpx.Response, status: int, kind: str) -> dict[str, str | None]:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == kind and body["error"]["message"]
    return body["error"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        (b'{"input": ', "the body is not valid JSON", None),
        (b"[1, 2]", "the body must be a JSON object", None),
        (b'{"model": "fake"}', "input is required", "input"),
        (b'{"input": 5}', "input must be a string or an array of strings", "input"),
        (b'{"input": ["a", 5]}', "input[1] must be a string", "input"),
        (b'{"input": [[1, 2], [3]]}', "input is an array of token ids", "input"),
        (b'{"input": [101, 2023]}', "input is an array of token ids", "input"),
        (
            b'{"input": "a", "encoding_format": "int8"}',
            "encoding_format must be 'float' or 'base64'",
            "encoding_format",
        ),
        (b'{"input": "a", "dimensions": "8"}', "dimensions must be a whole number", "dimensions"),
        (
            b'{"input": "a", "dimensions": 0}',
            "dimensions: Input should be greater than or equal to 1",
            "dimensions",
        ),
        (b'{"input": "a", "dimension": 8}', "unknown field 'dimension'", "dimension"),
        (
            b'{"input": "a", "input_type": "passage"}',
            "input_type must be 'query' or 'document'",
            "input_type",
        ),
        (b'{"input": "\\ud800"}', "the body is not valid JSON", None),
        (b"\xff\xfe{}", "the body is not valid JSON", None),
        (b'{"input": []}', "inputs is empty; send at least one text", None),
        (b'{"input": ["a", ""]}', "inputs[1] is an empty string", None),
        (b'{"input": "a", "dimensions": 99}', f"larger than the model's {DIMS} dimensions", None),
    ],
)
async def test_bad_bodies_get_400_saying_what_is_wrong(
    front: Front, body: bytes, message: str, param: str | None
) -> None:
    err = envelope(await post(front, body), 400, "invalid_request_error")
    assert message in str(err["message"]) and err["param"] == param and err["code"] == "invalid_argument"
    ok = await front.sdk().embeddings.create(model=MODEL, input="the pool still answers")
    assert len(ok.data) == 1


async def test_the_sdk_raises_its_own_typed_errors(front: Front) -> None:
    sdk = front.sdk()
    with pytest.raises(openai.NotFoundError) as nf:
        await sdk.embeddings.create(model="no-such-model", input="x")
    assert nf.value.status_code == 404 and "no-such-model" in nf.value.message
    with pytest.raises(openai.NotFoundError):
        await sdk.embeddings.create(model=f"{MODEL}/no-such-variant", input="x")
    with pytest.raises(openai.BadRequestError) as bad:
        await sdk.embeddings.create(model=MODEL, input=["x"] * 10_000)
    assert "10000 texts; the limit is" in bad.value.message
    too_long = " ".join(["word"] * (MAX_TOKENS * 2))
    with pytest.raises(openai.BadRequestError, match="Set truncate=true"):
        await sdk.embeddings.create(model=MODEL, input=too_long)


@pytest.mark.parametrize(
    ("raised", "status", "kind", "sdk_error"),
    [
        (
            errors.Overloaded("model variant fake--custom-cpu has 64 requests queued"),
            429,
            "rate_limit_error",
            openai.RateLimitError,
        ),
        (
            errors.Unavailable("no replica of fake--custom-cpu is up"),
            503,
            "service_unavailable_error",
            openai.InternalServerError,
        ),
        (errors.DeadlineExceeded("the deadline passed"), 504, "timeout_error", openai.InternalServerError),
        (RuntimeError("a bug"), 500, "server_error", openai.InternalServerError),
    ],
)
async def test_pool_failures_get_their_status(
    front: Front, raised: Exception, status: int, kind: str, sdk_error: type[openai.APIStatusError]
) -> None:
    front.backend.fail_next(raised)
    r = await post(front, {"input": "x"})
    err = envelope(r, status, kind)
    assert str(raised) in str(err["message"])
    if status == 429:
        assert r.headers["retry-after"] == "1" and int(r.headers["retry-after-ms"]) > 0
    front.backend.fail_next(raised)
    with pytest.raises(sdk_error) as info:
        await front.sdk().embeddings.create(model=MODEL, input="x")
    assert info.value.status_code == status
    assert (await front.sdk().embeddings.create(model=MODEL, input="x")).data


async def test_a_deadline_that_passes_in_the_queue_is_504(front: Front) -> None:
    front.backend.delay = 0.5
    blockers = await fill_slots(front.core)
    r = await post(front, {"input": "late"}, headers={"x-timeout-ms": "100"})
    await asyncio.gather(*blockers)
    err = envelope(r, 504, "timeout_error")
    assert "deadline" in str(err["message"]) and err["code"] == "deadline_exceeded"
    envelope(
        await post(front, {"input": "x"}, headers={"x-timeout-ms": "soon"}), 400, "invalid_request_error"
    )


async def test_a_body_over_the_message_limit_is_413_before_it_is_read() -> None:
    async with running(max_message_bytes=1 << 20) as front:
        big = json.dumps({"input": "x" * (20 << 20)}).encode()  # 20 MB
        err = envelope(await post(front, big), 413, "invalid_request_error")
        assert "limit is 1048576" in str(err["message"]) and err["code"] == "request_too_large"

        async def chunked() -> AsyncIterator[bytes]:  # no content-length: counted as it comes
            yield b'{"input": "'
            for _ in range(40):
                yield b"x" * 65536
            yield b'"}'

        async with httpx.AsyncClient() as http:
            r = await http.post(f"{front.url}/v1/embeddings", content=chunked())
        envelope(r, 413, "invalid_request_error")
        with pytest.raises(openai.APIStatusError) as info:
            await front.sdk().embeddings.create(model=MODEL, input="y" * (2 << 20))
        assert info.value.status_code == 413
        assert (await front.sdk().embeddings.create(model=MODEL, input="fits")).data


async def test_bearer_tokens_are_the_grpc_ones() -> None:
    async with running(tokens=["s3cret"]) as front:
        r = await post(front, {"input": "x"})
        err = envelope(r, 401, "authentication_error")
        assert "missing 'authorization: Bearer <token>'" in str(err["message"])
        assert r.headers["www-authenticate"] == "Bearer"
        with pytest.raises(openai.AuthenticationError, match="not valid for this pool"):
            await front.sdk(token="wrong").embeddings.create(model=MODEL, input="x")
        assert (await front.sdk(token="s3cret").embeddings.create(model=MODEL, input="x")).data
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{front.url}/health")).status_code == 200  # no token needed
            assert (await http.get(f"{front.url}/v1/models")).status_code == 401
    codes = [code for f, m, code in front.counted if (f, m) == ("http", "Embed")]
    assert codes == ["UNAUTHENTICATED", "UNAUTHENTICATED", "OK"]


# -- models and health ------------------------------------------------------------------


async def test_models_list_every_model_and_variant(front: Front) -> None:
    sdk = front.sdk()
    ids = [m.id async for m in sdk.models.list()]
    assert ids == [MODEL, f"{MODEL}/custom-cpu", f"{MODEL}/{OTHER_VARIANT}"]
    one = await sdk.models.retrieve(f"{MODEL}/{OTHER_VARIANT}")
    assert (one.id, one.object, one.owned_by) == (f"{MODEL}/{OTHER_VARIANT}", "model", "embedpool")
    with pytest.raises(openai.NotFoundError):
        await sdk.models.retrieve("nope")


async def test_health_follows_the_default_model(front: Front) -> None:
    async with httpx.AsyncClient() as http:
        ok = await http.get(f"{front.url}/health")
        front.up[0] = False
        down = await http.get(f"{front.url}/health")
        missing = await http.get(f"{front.url}/v1/nothing")
    assert (ok.status_code, ok.json()["status"]) == (200, "ok")
    assert (down.status_code, down.json()["status"]) == (503, "unavailable")
    assert "no such route" in str(envelope(missing, 404, "not_found_error")["message"])


async def test_a_wrong_method_is_405_in_the_envelope(front: Front) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{front.url}/v1/embeddings")
    assert "GET /v1/embeddings: method not allowed" in str(
        envelope(r, 405, "invalid_request_error")["message"]
    )


async def test_a_big_float_answer_comes_in_pieces_in_order() -> None:
    texts = [f"text number {i}" for i in range(300)]  # pieces of 128 rows: 3 of them
    async with running(max_inputs=512) as front:
        got = await front.sdk().embeddings.create(model=MODEL, input=texts, encoding_format="float")
        packed = await front.sdk().embeddings.create(model=MODEL, input=texts)
    assert [d.index for d in got.data] == list(range(300)) and got.usage.total_tokens == 300 * 5
    np.testing.assert_allclose(np.array([d.embedding for d in got.data]), expected(texts), rtol=1e-6)
    np.testing.assert_allclose(np.array([d.embedding for d in packed.data]), expected(texts), rtol=1e-6)
