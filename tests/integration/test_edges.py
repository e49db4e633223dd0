"""Bad and extreme input on every field of every RPC, against the real pool.

Each case gets the right status code and a message that names the problem, and a plain
Embed right after it succeeds. Decisions recorded here (and in RELIABILITY.md):

- whitespace-only input is allowed: it embeds as the special tokens alone;
- a very long single word is allowed: WordPiece maps a word over 100 characters to [UNK];
- NUL, emoji, combining marks and RTL text are ordinary text;
- lone surrogates cannot be sent: protobuf strings are UTF-8, so a client library refuses
  to encode them, and bytes that are not UTF-8 fail to parse on the server;
- a 10 MB message (under the 16 MiB limit) is answered when it holds at most 512 inputs
  and refused with INVALID_ARGUMENT naming the limit when it holds more;
- a 20 MB message is RESOURCE_EXHAUSTED from gRPC, on the pool's port and through Ray's
  proxy (which on its own would take 2 GiB).
"""

from __future__ import annotations

import time
from typing import Any

import grpc
import numpy as np
import pytest

from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc

from .conftest import Pool
from .recording_model import reference_vector

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
OPTIONS = [("grpc.max_send_message_length", 64 * MiB), ("grpc.max_receive_message_length", 64 * MiB)]
U32_MAX = 2**32 - 1
HUGE_NAME = "n" * 100_000
E = pb.EmbedRequest
S = pb.SimilarityRequest
C = pb.CountTokensRequest
V = pb.Vector
RECORDING = pb.ModelSelector(model="recording-test")
RECORDING_TYPO = pb.ModelSelector(model="recording-tset")

UNICODE = {
    "emoji and ZWJ sequences": "🙂 👩‍👩‍👧 🏳️‍🌈 🇯🇵",
    "combining marks": "e\u0301\u0301\u0301 Z\u0351\u0352\u0353\u0354 a\u20dd",
    "right to left": "مرحبا بالعالم שלום עולם",
    "NUL characters": "a\x00b\x00\x00c",
    "only a NUL": "\x00",
    "zero-width and BOM": "\u200b\u200d\ufeff",
    "whitespace only": " \t\n\u3000 ",
    "mixed scripts": "Ελληνικά кириллица 中文 日本語 한국어 हिन्दी",
}

Code = grpc.StatusCode
# name -> (method, request, expected code, fragments the message must contain)
REFUSALS: dict[str, tuple[str, Any, Code, tuple[str, ...]]] = {
    # Embed
    "Embed model: unknown": (
        "Embed",
        E(model=pb.ModelSelector(model="gpt-x"), inputs=["x"]),
        Code.NOT_FOUND,
        ("unknown model 'gpt-x'", "all-minilm-l6-v2"),
    ),
    "Embed model: NUL in name": (
        "Embed",
        E(model=pb.ModelSelector(model="a\x00b"), inputs=["x"]),
        Code.NOT_FOUND,
        ("unknown model 'a\\x00b'",),
    ),
    "Embed model: 100k characters": (
        "Embed",
        E(model=pb.ModelSelector(model=HUGE_NAME), inputs=["x"]),
        Code.INVALID_ARGUMENT,
        ("model.model is 100000 characters", "at most 256"),
    ),
    "Embed variant: 100k characters": (
        "Embed",
        E(model=pb.ModelSelector(variant=HUGE_NAME), inputs=["x"]),
        Code.INVALID_ARGUMENT,
        ("model.variant is 100000 characters",),
    ),
    "Embed variant: unknown": (
        "Embed",
        E(model=pb.ModelSelector(variant="tpu"), inputs=["x"]),
        Code.NOT_FOUND,
        ("tpu", "torch-cpu"),
    ),
    "Embed backend: 99": (
        "Embed",
        E(model=pb.ModelSelector(backend=99), inputs=["x"]),
        Code.INVALID_ARGUMENT,
        ("model.backend=99", "BACKEND_ONNX"),
    ),
    "Embed device: -1": (
        "Embed",
        E(model=pb.ModelSelector(device=-1), inputs=["x"]),
        Code.INVALID_ARGUMENT,
        ("model.device=-1", "DEVICE_CPU"),
    ),
    "Embed inputs: none": ("Embed", E(), Code.INVALID_ARGUMENT, ("inputs is empty",)),
    "Embed inputs: an empty string": (
        "Embed",
        E(inputs=["a", "b", ""]),
        Code.INVALID_ARGUMENT,
        ("inputs[2] is an empty string",),
    ),
    "Embed inputs: 100k": (
        "Embed",
        E(inputs=["x"] * 100_000),
        Code.INVALID_ARGUMENT,
        ("100000 texts", "the limit is 512"),
    ),
    "Embed inputs: 513": (
        "Embed",
        E(inputs=["x"] * 513),
        Code.INVALID_ARGUMENT,
        ("513 texts", "the limit is 512"),
    ),
    "Embed inputs: one over-long text": (
        "Embed",
        E(inputs=["word " * 300]),
        Code.INVALID_ARGUMENT,
        ("input 0 has 302 tokens", "limit is 256"),
    ),
    "Embed input_type: 99": (
        "Embed",
        E(inputs=["x"], input_type=99),
        Code.INVALID_ARGUMENT,
        ("input_type=99", "INPUT_TYPE_QUERY"),
    ),
    "Embed precision: 99": (
        "Embed",
        E(inputs=["x"], precision=99),
        Code.INVALID_ARGUMENT,
        ("precision=99", "PRECISION_INT8"),
    ),
    "Embed precision: -1": ("Embed", E(inputs=["x"], precision=-1), Code.INVALID_ARGUMENT, ("precision=-1",)),
    "Embed encoding: 99": (
        "Embed",
        E(inputs=["x"], encoding=99),
        Code.INVALID_ARGUMENT,
        ("encoding=99", "VECTOR_ENCODING_BYTES"),
    ),
    "Embed truncation_direction: 99": (
        "Embed",
        E(inputs=["x"], truncation_direction=99),
        Code.INVALID_ARGUMENT,
        ("truncation_direction=99",),
    ),
    "Embed dimensions: 2^32-1": (
        "Embed",
        E(inputs=["x"], dimensions=U32_MAX),
        Code.INVALID_ARGUMENT,
        (f"dimensions={U32_MAX}", "384 dimensions"),
    ),
    "Embed dimensions: 385": (
        "Embed",
        E(inputs=["x"], dimensions=385),
        Code.INVALID_ARGUMENT,
        ("dimensions=385", "up to 384"),
    ),
    "Embed prompt: 100k words, truncate off": (
        "Embed",
        E(inputs=["x"], prompt="p " * 100_000),
        Code.INVALID_ARGUMENT,
        ("input 0 has 100003 tokens", "prompt included"),
    ),
    "Embed prompt_name: unknown": (
        "Embed",
        E(inputs=["x"], prompt_name="nope"),
        Code.INVALID_ARGUMENT,
        ("unknown prompt_name 'nope'",),
    ),
    "Embed prompt_name: 100k characters": (
        "Embed",
        E(inputs=["x"], prompt_name=HUGE_NAME),
        Code.INVALID_ARGUMENT,
        ("prompt_name is 100000 characters",),
    ),
    "Embed prompt and prompt_name": (
        "Embed",
        E(inputs=["x"], prompt="a: ", prompt_name="query"),
        Code.INVALID_ARGUMENT,
        ("at most one of prompt and prompt_name",),
    ),
    # Similarity
    "Similarity mode: 99": (
        "Similarity",
        S(queries=["q"], documents=["d"], mode=99),
        Code.INVALID_ARGUMENT,
        ("mode=99", "SIMILARITY_MODE_COSINE"),
    ),
    "Similarity nothing given": ("Similarity", S(), Code.INVALID_ARGUMENT, ("queries is empty",)),
    "Similarity queries: none": (
        "Similarity",
        S(documents=["d"]),
        Code.INVALID_ARGUMENT,
        ("queries is empty",),
    ),
    "Similarity documents: none": (
        "Similarity",
        S(queries=["q"]),
        Code.INVALID_ARGUMENT,
        ("documents is empty",),
    ),
    "Similarity documents: an empty string": (
        "Similarity",
        S(queries=["q"], documents=["d", ""]),
        Code.INVALID_ARGUMENT,
        ("documents[1] is an empty string",),
    ),
    "Similarity queries: 100k": (
        "Similarity",
        S(queries=["q"] * 100_000, documents=["d"]),
        Code.INVALID_ARGUMENT,
        ("100000 texts", "the limit is 512"),
    ),
    "Similarity dimensions: 2^32-1": (
        "Similarity",
        S(queries=["q"], documents=["d"], dimensions=U32_MAX),
        Code.INVALID_ARGUMENT,
        ("384 dimensions",),
    ),
    "Similarity model: 100k characters": (
        "Similarity",
        S(model=pb.ModelSelector(model=HUGE_NAME), queries=["q"], documents=["d"]),
        Code.INVALID_ARGUMENT,
        ("100000 characters",),
    ),
    "Similarity texts and vectors": (
        "Similarity",
        S(queries=["q"], document_vectors=[V(values=[1.0])]),
        Code.INVALID_ARGUMENT,
        ("not both",),
    ),
    "Similarity vectors: NaN": (
        "Similarity",
        S(query_vectors=[V(values=[1.0, float("nan")])], document_vectors=[V(values=[1.0, 1.0])]),
        Code.INVALID_ARGUMENT,
        ("query_vectors[0] has a NaN or infinite value",),
    ),
    "Similarity vectors: +inf": (
        "Similarity",
        S(query_vectors=[V(values=[1.0])], document_vectors=[V(values=[1.0]), V(values=[float("inf")])]),
        Code.INVALID_ARGUMENT,
        ("document_vectors[1] has a NaN or infinite value",),
    ),
    "Similarity vectors: -inf": (
        "Similarity",
        S(query_vectors=[V(values=[-float("inf")])], document_vectors=[V(values=[1.0])]),
        Code.INVALID_ARGUMENT,
        ("query_vectors[0] has a NaN",),
    ),
    "Similarity vectors: ragged": (
        "Similarity",
        S(query_vectors=[V(values=[1.0, 2.0]), V(values=[1.0])], document_vectors=[V(values=[1.0, 2.0])]),
        Code.INVALID_ARGUMENT,
        ("query_vectors[1] has 1 values but query_vectors[0] has 2",),
    ),
    "Similarity vectors: dims differ": (
        "Similarity",
        S(query_vectors=[V(values=[1.0, 2.0])], document_vectors=[V(values=[1.0, 2.0, 3.0])]),
        Code.INVALID_ARGUMENT,
        ("2 dimensions but document_vectors have 3",),
    ),
    "Similarity vectors: an empty vector": (
        "Similarity",
        S(query_vectors=[V()], document_vectors=[V(values=[1.0])]),
        Code.INVALID_ARGUMENT,
        ("query_vectors[0] has no values",),
    ),
    "Similarity vectors: no documents": (
        "Similarity",
        S(query_vectors=[V(values=[1.0])]),
        Code.INVALID_ARGUMENT,
        ("document_vectors is empty",),
    ),
    "Similarity vectors: 20k x 20k": (
        "Similarity",
        S(query_vectors=[V(values=[1.0])] * 20_000, document_vectors=[V(values=[1.0])] * 20_000),
        Code.INVALID_ARGUMENT,
        ("query_vectors has 20000 vectors", "the limit is 512"),
    ),
    "Similarity vectors: 513 documents": (
        "Similarity",
        S(query_vectors=[V(values=[1.0])], document_vectors=[V(values=[1.0])] * 513),
        Code.INVALID_ARGUMENT,
        ("document_vectors has 513 vectors",),
    ),
    # GetModel
    "GetModel model: unknown": (
        "GetModel",
        pb.GetModelRequest(model="nope"),
        Code.NOT_FOUND,
        ("unknown model 'nope'",),
    ),
    "GetModel model: NUL in name": (
        "GetModel",
        pb.GetModelRequest(model="\x00"),
        Code.NOT_FOUND,
        ("unknown model '\\x00'",),
    ),
    "GetModel model: 100k characters": (
        "GetModel",
        pb.GetModelRequest(model=HUGE_NAME),
        Code.INVALID_ARGUMENT,
        ("model is 100000 characters",),
    ),
    # CountTokens
    "CountTokens inputs: none": ("CountTokens", C(), Code.INVALID_ARGUMENT, ("inputs is empty",)),
    "CountTokens inputs: an empty string": (
        "CountTokens",
        C(inputs=[""]),
        Code.INVALID_ARGUMENT,
        ("inputs[0] is an empty string",),
    ),
    "CountTokens inputs: 100k": (
        "CountTokens",
        C(inputs=["x"] * 100_000),
        Code.INVALID_ARGUMENT,
        ("the limit is 512",),
    ),
    "CountTokens input_type: 99": (
        "CountTokens",
        C(inputs=["x"], input_type=99),
        Code.INVALID_ARGUMENT,
        ("input_type=99",),
    ),
    "CountTokens prompt and prompt_name": (
        "CountTokens",
        C(inputs=["x"], prompt="a", prompt_name="b"),
        Code.INVALID_ARGUMENT,
        ("at most one",),
    ),
    "CountTokens prompt_name: unknown": (
        "CountTokens",
        C(inputs=["x"], prompt_name="nope"),
        Code.INVALID_ARGUMENT,
        ("unknown prompt_name 'nope'",),
    ),
    "CountTokens prompt_name: 100k characters": (
        "CountTokens",
        C(inputs=["x"], prompt_name=HUGE_NAME),
        Code.INVALID_ARGUMENT,
        ("prompt_name is 100000 characters",),
    ),
    "CountTokens backend: 99": (
        "CountTokens",
        C(model=pb.ModelSelector(backend=99), inputs=["x"]),
        Code.INVALID_ARGUMENT,
        ("model.backend=99",),
    ),
    "CountTokens model: unknown": (
        "CountTokens",
        C(model=pb.ModelSelector(model="nope"), inputs=["x"]),
        Code.NOT_FOUND,
        ("unknown model 'nope'",),
    ),
}


@pytest.fixture(scope="module")
def stub(pool: Pool) -> pb_grpc.EmbeddingServiceStub:
    return pb_grpc.EmbeddingServiceStub(grpc.insecure_channel(pool.target, options=OPTIONS))


def assert_serving(stub: pb_grpc.EmbeddingServiceStub) -> None:
    assert len(stub.Embed(E(inputs=["still serving"]), timeout=60).embeddings) == 1


def unit_rows(resp: pb.EmbedResponse) -> np.ndarray:
    rows = np.array([e.values for e in resp.embeddings], dtype=np.float32)
    assert np.isfinite(rows).all()
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-4)
    return rows


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals(stub: pb_grpc.EmbeddingServiceStub, case: str) -> None:
    method, request, code, fragments = REFUSALS[case]
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, method)(request, timeout=60)
    took = time.monotonic() - started
    assert err.value.code() == code, err.value.details()
    details = err.value.details()
    for fragment in fragments:
        assert fragment in details, details
    assert len(details) <= 512
    assert took < 15, f"{case} took {took:.1f}s to refuse"  # validation, not work
    assert_serving(stub)


# ---- accepted edge values ------------------------------------------------------------------


@pytest.mark.parametrize("name", list(UNICODE))
def test_unicode_edge_cases_are_ordinary_text(stub: pb_grpc.EmbeddingServiceStub, name: str) -> None:
    text = UNICODE[name]
    resp = stub.Embed(E(inputs=[text, "plain"]), timeout=60)
    rows = unit_rows(resp)
    assert rows.shape == (2, 384)
    counts = stub.CountTokens(C(inputs=[text]), timeout=60).token_counts
    assert counts[0] >= 2
    assert_serving(stub)


def test_whitespace_only_embeds_as_the_special_tokens(stub: pb_grpc.EmbeddingServiceStub) -> None:
    resp = stub.Embed(E(inputs=["   ", "\t\n"]), timeout=60)
    unit_rows(resp)
    assert resp.usage.input_tokens == 4  # [CLS] [SEP] each
    assert list(stub.CountTokens(C(inputs=["   "]), timeout=60).token_counts) == [2]


def test_a_very_long_single_word_is_one_unknown_token(stub: pb_grpc.EmbeddingServiceStub) -> None:
    word = "x" * 100_000
    resp = stub.Embed(E(inputs=[word]), timeout=60)
    unit_rows(resp)
    assert resp.usage.input_tokens == 3 and resp.usage.truncated_inputs == 0
    assert_serving(stub)


def test_lone_surrogates_cannot_be_sent_and_non_utf8_bytes_do_not_parse(
    pool: Pool, stub: pb_grpc.EmbeddingServiceStub
) -> None:
    with pytest.raises(UnicodeEncodeError):
        E(inputs=["\ud800"]).SerializeToString()
    raw = grpc.insecure_channel(pool.target).unary_unary(
        "/embedpool.v1.EmbeddingService/Embed",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    # inputs (field 2) = the surrogate U+D800 written as UTF-8-style bytes (CESU-8): not UTF-8.
    for payload in (b"\x12\x03\xed\xa0\x80", b"\xff\xff\xff"):
        with pytest.raises(grpc.RpcError) as err:
            raw(payload, timeout=30)
        # refused before any handler runs (server/fronts/grpc_decode.py; grpc.aio alone says UNKNOWN)
        assert err.value.code() == Code.INVALID_ARGUMENT
        assert "not a valid protobuf message" in err.value.details()
        assert "Error parsing message" in err.value.details()
    assert_serving(stub)


def test_unknown_fields_are_ignored(pool: Pool, stub: pb_grpc.EmbeddingServiceStub) -> None:
    raw = grpc.insecure_channel(pool.target).unary_unary(
        "/embedpool.v1.EmbeddingService/ListModels",
        request_serializer=lambda b: b,
        response_deserializer=pb.ListModelsResponse.FromString,
    )
    field_99_of_1_mib = b"\x9a\x06" + b"\x80\x80\x40" + b"u" * MiB  # tag 99 (length-delimited), 1 MiB
    resp = raw(field_99_of_1_mib, timeout=30)
    assert resp.default_model == "all-minilm-l6-v2"


def test_huge_top_k_and_tiny_dimensions_and_a_huge_prompt_with_truncation(
    stub: pb_grpc.EmbeddingServiceStub,
) -> None:
    resp = stub.Similarity(S(queries=["red planet"], documents=["Mars", "Venus"], top_k=U32_MAX), timeout=60)
    assert len(resp.rows[0].ranked) == 2  # min(top_k, documents)
    resp = stub.Embed(E(inputs=["x"], dimensions=1), timeout=60)
    assert resp.dimensions == 1 and abs(abs(resp.embeddings[0].values[0]) - 1) < 1e-6
    resp = stub.Embed(E(inputs=["x"], prompt="p " * 100_000, truncate=True), timeout=60)
    assert resp.usage.truncated_inputs == 1 and resp.usage.input_tokens == 256


def test_vectors_at_the_edges_of_float32_score_finite(stub: pb_grpc.EmbeddingServiceStub) -> None:
    big = 3.4e38
    resp = stub.Similarity(
        S(
            query_vectors=[V(values=[big, big])],
            document_vectors=[V(values=[big, big]), V(values=[-big, big])],
        ),
        timeout=60,
    )
    # Before: float32 norms overflowed to inf and the cosine came back NaN.
    assert list(resp.rows[0].scores) == pytest.approx([1.0, 0.0], abs=1e-6)
    tiny = 1e-45  # the smallest float32 subnormal
    resp = stub.Similarity(
        S(query_vectors=[V(values=[tiny])], document_vectors=[V(values=[tiny])]), timeout=60
    )
    assert list(resp.rows[0].scores) == [1.0]


# ---- EmbedStream ---------------------------------------------------------------------------


def test_embed_stream_answers_every_bad_request_on_its_own(stub: pb_grpc.EmbeddingServiceStub) -> None:
    big_id = "r" * MiB
    requests = {
        "unset": pb.EmbedStreamRequest(request_id="unset"),
        big_id: pb.EmbedStreamRequest(request_id=big_id, request=E(inputs=["a 1 MiB request id is echoed"])),
        "enum": pb.EmbedStreamRequest(request_id="enum", request=E(inputs=["x"], precision=99)),
        "too many": pb.EmbedStreamRequest(request_id="too many", request=E(inputs=["x"] * 100_000)),
        "no model": pb.EmbedStreamRequest(
            request_id="no model", request=E(model=RECORDING_TYPO, inputs=["x"])
        ),
        "": pb.EmbedStreamRequest(request_id="", request=E(inputs=["an empty request id is allowed"])),
    }
    out = {r.request_id: r for r in stub.EmbedStream(iter(requests.values()), timeout=60)}
    assert set(out) == set(requests)
    expect = {
        "unset": (Code.INVALID_ARGUMENT, "request is unset"),
        "enum": (Code.INVALID_ARGUMENT, "precision=99"),
        "too many": (Code.INVALID_ARGUMENT, "the limit is 512"),
        "no model": (Code.NOT_FOUND, "unknown model"),
    }
    for rid, (code, fragment) in expect.items():
        assert out[rid].error.code == code.value[0] and fragment in out[rid].error.message
    assert len(out[big_id].response.embeddings) == len(out[""].response.embeddings) == 1
    assert_serving(stub)


# ---- message size ------------------------------------------------------------------------------


def test_a_10_mb_message_with_512_inputs_is_answered(stub: pb_grpc.EmbeddingServiceStub) -> None:
    # On the recording test model, whose tokenizer is a whitespace split: 10 MB of text
    # through the real model's tokenizer takes ~40 s on 2 busy cores (see RELIABILITY.md).
    texts = [f"{i:04d}" + "w" * 20_000 for i in range(512)]
    request = E(model=RECORDING, inputs=texts, encoding=pb.VECTOR_ENCODING_BYTES)
    assert 10_000_000 < request.ByteSize() < 16 * MiB
    resp = stub.Embed(request, timeout=120)
    got = np.stack([np.frombuffer(e.data, "<f4") for e in resp.embeddings])
    want = np.stack([reference_vector(t) for t in texts])
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    assert np.allclose(got, want, atol=1e-6)  # every answer in its place
    assert_serving(stub)


def test_a_10_mb_message_with_too_many_inputs_is_refused_fast(stub: pb_grpc.EmbeddingServiceStub) -> None:
    request = E(inputs=["fifty bytes of text in every input of this request"] * 200_000)
    assert 10_000_000 < request.ByteSize() < 16 * MiB
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        stub.Embed(request, timeout=60)
    assert err.value.code() == Code.INVALID_ARGUMENT
    assert "200000 texts; the limit is 512" in err.value.details()
    assert time.monotonic() - started < 10
    assert_serving(stub)


def test_a_10_mb_similarity_of_vectors_is_answered(stub: pb_grpc.EmbeddingServiceStub) -> None:
    q = [V(values=[0.5] * 5000)] * 256
    d = [V(values=[1.0] * 4999 + [-1.0])] * 256
    request = S(query_vectors=q, document_vectors=d, top_k=3)
    assert 10_000_000 < request.ByteSize() < 16 * MiB
    resp = stub.Similarity(request, timeout=60)
    assert len(resp.rows) == 256 and [r.index for r in resp.rows[0].ranked] == [0, 1, 2]
    assert resp.rows[0].ranked[0].score == pytest.approx(4998 / 5000, abs=1e-6)
    assert_serving(stub)


@pytest.mark.parametrize("through", ["direct", "ray_proxy"])
def test_a_20_mb_message_is_resource_exhausted(
    pool: Pool, stub: pb_grpc.EmbeddingServiceStub, through: str
) -> None:
    target = pool.target if through == "direct" else pool.proxy_target
    big = pb_grpc.EmbeddingServiceStub(grpc.insecure_channel(target, options=OPTIONS))
    request = E(inputs=["word " * 4_000_000])
    assert request.ByteSize() > 16 * MiB
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        big.Embed(request, timeout=120)
    assert err.value.code() == Code.RESOURCE_EXHAUSTED
    assert "larger than max" in err.value.details() and "16777216" in err.value.details()
    # Before (proxy): Ray's proxy takes 2 GiB, and the router spent ~45 s tokenizing 4M words.
    assert time.monotonic() - started < 30
    assert_serving(stub)
    assert_serving(big)


def test_the_python_client_does_not_retry_a_message_that_is_too_large(pool: Pool) -> None:
    from embedpool import EmbeddingClient
    from embedpool.errors import InvalidInputError

    with EmbeddingClient(target=pool.target, timeout=60, max_message_bytes=64 * MiB) as client:
        with pytest.raises(InvalidInputError, match="larger than max"):
            client.embed(["word " * 4_000_000])
        assert len(client.get_text_embedding("fine")) == 384
