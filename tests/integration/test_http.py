"""The OpenAI-compatible HTTP front of the live pool, called with the official `openai` SDK.

The same Router replica serves gRPC and HTTP over one core: the SDK's vectors (float and
base64, its default) must be the gRPC client's, errors must come in OpenAI's envelope as the
SDK's own exceptions, and a bad request must leave the pool answering. The statuses only a
failing replica gives (429, 503) are driven over a faked model in tests/unit/test_http_front.py.
"""

from __future__ import annotations

import json

import httpx
import numpy as np
import openai
import pytest

from embedpool import EmbeddingClient

from .conftest import AuthFront, Pool
from .pool_metrics import settled_embed_rpcs
from .test_frameworks import PLANETS

pytestmark = pytest.mark.integration
MODEL = "all-minilm-l6-v2"
ODD = ["nul\x00inside", "emoji 🧪🚀 and ünïcödé", "rtl שלום", "e\u0301 combining", "\u200b", "中文文本"]


def sdk(url: str, token: str = "unused", **kwargs: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=token, max_retries=0, timeout=120, **kwargs)  # type: ignore[arg-type]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def still_answers(pool: Pool) -> None:
    got = sdk(pool.http_url).embeddings.create(model=MODEL, input="the pool still answers")
    assert len(got.data[0].embedding) == 384


@pytest.mark.parametrize("variant", ["", "onnx-cpu", "openvino-cpu"])
def test_sdk_vectors_are_the_grpc_vectors(pool: Pool, variant: str) -> None:
    texts = [*PLANETS, *ODD]
    with EmbeddingClient(target=pool.target, model=MODEL, variant=variant, timeout=120) as client:
        want = client.embed(texts)
    model = f"{MODEL}/{variant}" if variant else MODEL
    floats = sdk(pool.http_url).embeddings.create(model=model, input=texts, encoding_format="float")
    packed = sdk(pool.http_url).embeddings.create(model=model, input=texts)  # base64, the SDK's default
    for got in (floats, packed):
        assert [d.index for d in got.data] == list(range(len(texts)))
        vectors = np.array([d.embedding for d in got.data], dtype=np.float32)
        assert cosines(vectors, want.embeddings).min() >= 0.9999
        assert got.usage.prompt_tokens == got.usage.total_tokens == want.input_tokens
        assert got.model == model


def test_dimensions_and_input_type(pool: Pool) -> None:
    query = "Which planet is known as the Red Planet?"
    with EmbeddingClient(target=pool.target, model=MODEL, timeout=120) as client:
        want = client.embed([query], input_type="query", dimensions=128).embeddings
    got = sdk(pool.http_url).embeddings.create(
        model=MODEL, input=[query], dimensions=128, extra_body={"input_type": "query"}
    )
    vector = np.array([got.data[0].embedding], dtype=np.float32)
    assert vector.shape == (1, 128) and cosines(vector, want).min() >= 0.9999
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4  # cut, then normalized


def test_http_calls_are_counted_by_front(pool: Pool) -> None:
    before = settled_embed_rpcs(MODEL, "onnx-cpu", front="http")
    for i in range(3):
        sdk(pool.http_url).embeddings.create(model=f"{MODEL}/onnx-cpu", input=f"counted {i}")
    assert settled_embed_rpcs(MODEL, "onnx-cpu", at_least=before + 3, front="http") == before + 3


def test_models_and_health(pool: Pool) -> None:
    ids = [m.id for m in sdk(pool.http_url).models.list()]
    assert ids[:2] == [MODEL, f"{MODEL}/torch-cpu"] and f"{MODEL}/openvino-cpu" in ids
    assert sdk(pool.http_url).models.retrieve(f"{MODEL}/onnx-int8").id == f"{MODEL}/onnx-int8"
    health = httpx.get(f"{pool.http_url}/health", timeout=30)
    assert health.status_code == 200 and health.json()["model"] == MODEL


def test_the_sdk_raises_its_typed_errors(pool: Pool) -> None:
    client = sdk(pool.http_url)
    with pytest.raises(openai.NotFoundError) as nf:
        client.embeddings.create(model="text-embedding-3-small", input="x")
    assert "text-embedding-3-small" in nf.value.message and nf.value.status_code == 404
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model=f"{MODEL}/no-such-variant", input="x")
    with pytest.raises(openai.BadRequestError, match="10000 texts; the limit is 512"):
        client.embeddings.create(model=MODEL, input=["x"] * 10_000)
    with pytest.raises(openai.BadRequestError, match="token ids"):
        client.embeddings.create(model=MODEL, input=[[101, 2023, 102]])
    with pytest.raises(openai.BadRequestError, match="tokens") as long:
        client.embeddings.create(model=MODEL, input="word " * 2000)
    assert long.value.body["param"] is None and long.value.body["type"] == "invalid_request_error"  # type: ignore[index]
    assert (
        len(client.embeddings.create(model=MODEL, input="word " * 2000, extra_body={"truncate": True}).data)
        == 1
    )
    # A deadline that passes while queued (1 microsecond): 504, the SDK's server error.
    with pytest.raises(openai.InternalServerError) as late:
        client.embeddings.create(model=MODEL, input="late", extra_headers={"x-timeout-ms": "0.001"})
    assert late.value.status_code == 504 and "deadline" in late.value.message
    still_answers(pool)


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b'{"model": "all-minilm-l6-v2", "input": ', 400, "not valid JSON"),
        (b'{"input": 42}', 400, "input must be a string or an array of strings"),
        (b'{"input": ["ok", null]}', 400, "input[1] must be a string"),
        (b'{"input": "x", "encoding_format": "binary"}', 400, "encoding_format must be"),
        (b'{"input": ""}', 400, "inputs[0] is an empty string"),
        (b'{"input": "\\udc00 lone surrogate"}', 400, "not valid JSON"),
        (json.dumps({"input": "x" * (20 << 20)}).encode(), 413, "the limit is 16777216"),
    ],
)
def test_bad_bodies_get_a_clear_4xx_and_the_pool_keeps_answering(
    pool: Pool, body: bytes, status: int, fragment: str
) -> None:
    r = httpx.post(
        f"{pool.http_url}/v1/embeddings",
        content=body,
        headers={"content-type": "application/json"},
        timeout=120,
    )
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert fragment in error["message"] and set(error) == {"message", "type", "param", "code"}
    still_answers(pool)


def test_bearer_tokens(pool: Pool, auth_front: AuthFront) -> None:
    with pytest.raises(openai.AuthenticationError, match="not valid for this pool"):
        sdk(auth_front.http_url, token="wrong").embeddings.create(model=MODEL, input="x")
    r = httpx.post(f"{auth_front.http_url}/v1/embeddings", json={"input": "x"}, timeout=60)
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
    got = sdk(auth_front.http_url, token=auth_front.token).embeddings.create(model=MODEL, input="x")
    assert len(got.data[0].embedding) == 384
    assert httpx.get(f"{auth_front.http_url}/health", timeout=30).status_code == 200  # open, as gRPC health
