"""Bearer-token auth on the pool's own gRPC port (the real grpc_front over a fake backend)
and on the Ray-proxy path (ingress.Router's methods, called directly): missing or wrong
token is UNAUTHENTICATED, the right one works, health and reflection stay open, and no
token ever shows up in a log line or an error message."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from embedpool import AsyncEmbeddingClient
from embedpool.errors import AuthenticationError
from embedpool.server.fronts.auth import TokenAuth
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc
from tests.unit.fake_backend import DIMS, FakeBackend, ProxyContext, serving

GOOD = "s3cr3t-token-0123456789abcdef"
OTHER_GOOD = "second-valid-token-zyxwvu"
WRONG = "wr0ng-token-should-not-leak"
SECRETS = (GOOD, OTHER_GOOD, WRONG)

UNARY_CALLS: dict[str, Any] = {
    "Embed": pb.EmbedRequest(inputs=["hello"]),
    "Similarity": pb.SimilarityRequest(queries=["q"], documents=["d"]),
    "ListModels": pb.ListModelsRequest(),
    "GetModel": pb.GetModelRequest(),
    "CountTokens": pb.CountTokensRequest(inputs=["hello"]),
}
BAD_METADATA = {
    "missing": (),
    "wrong token": (("authorization", f"Bearer {WRONG}"),),
    "no scheme": (("authorization", GOOD),),
    "basic scheme": (("authorization", f"Basic {GOOD}"),),
    "empty bearer": (("authorization", "Bearer "),),
    "a prefix of the token": (("authorization", f"Bearer {GOOD[:-1]}"),),
    "token plus a suffix": (("authorization", f"Bearer {GOOD}x"),),
}


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    return caplog


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for secret in SECRETS:
            assert secret not in text


@pytest.mark.parametrize("bad", list(BAD_METADATA))
async def test_every_rpc_refuses_a_missing_or_wrong_token(bad: str, logs: pytest.LogCaptureFixture) -> None:
    async with (
        serving(auth=TokenAuth([GOOD, OTHER_GOOD])) as (target, _, backend),
        grpc.aio.insecure_channel(target) as channel,
    ):
        stub = pb_grpc.EmbeddingServiceStub(channel)
        for method, request in UNARY_CALLS.items():
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await getattr(stub, method)(request, metadata=BAD_METADATA[bad], timeout=10)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED, method
            assert "token" in err.value.details() or "authorization" in err.value.details()
            assert_no_secret(err.value.details())
        call = stub.EmbedStream(
            iter([pb.EmbedStreamRequest(request=UNARY_CALLS["Embed"])]), metadata=BAD_METADATA[bad]
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            async for _ in call:
                pass
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert backend.seen == []  # refused before any work
    assert_no_secret(logs.text)


async def test_the_right_tokens_work_and_health_and_reflection_need_none(
    logs: pytest.LogCaptureFixture,
) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    async with (
        serving(auth=TokenAuth([GOOD, OTHER_GOOD])) as (target, _, _),
        grpc.aio.insecure_channel(target) as channel,
    ):
        stub = pb_grpc.EmbeddingServiceStub(channel)
        for token in (GOOD, OTHER_GOOD):
            md = (("authorization", f"Bearer {token}"),)
            for method, request in UNARY_CALLS.items():
                await getattr(stub, method)(request, metadata=md, timeout=10)
            stream = stub.EmbedStream(
                iter([pb.EmbedStreamRequest(request_id="a", request=UNARY_CALLS["Embed"])]), metadata=md
            )
            assert [r.request_id async for r in stream] == ["a"]
        # "bearer" is case-insensitive (RFC 6750); the header name is lower-case in gRPC.
        await stub.Embed(UNARY_CALLS["Embed"], metadata=(("authorization", f"bearer {GOOD}"),), timeout=10)

        health = health_pb2_grpc.HealthStub(channel)
        resp = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        names = [s.name async for a in answers for s in a.list_services_response.service]
        assert "embedpool.v1.EmbeddingService" in names
    assert_no_secret(logs.text)


async def test_the_python_client_sends_its_token_and_maps_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    async with serving(auth=TokenAuth([GOOD])) as (target, _, _):
        async with AsyncEmbeddingClient(target=target, token=GOOD, timeout=10) as client:
            assert len(await client.aget_text_embedding("hi")) == DIMS
        monkeypatch.setenv("EMBEDPOOL_TOKEN", GOOD)
        async with AsyncEmbeddingClient(target=target, timeout=10) as client:
            assert len(await client.aget_text_embedding("hi")) == DIMS
        async with AsyncEmbeddingClient(target=target, token=WRONG, timeout=10) as client:
            with pytest.raises(AuthenticationError) as err:
                await client.aget_text_embedding("hi")
            assert_no_secret(str(err.value), repr(err.value))


async def test_an_internal_error_is_logged_without_the_token(logs: pytest.LogCaptureFixture) -> None:
    backend = FakeBackend()
    backend.fail_with = RuntimeError("the model fell over")
    async with (
        serving(backend, auth=TokenAuth([GOOD])) as (target, _, _),
        grpc.aio.insecure_channel(target) as channel,
    ):
        stub = pb_grpc.EmbeddingServiceStub(channel)
        md = (("authorization", f"Bearer {GOOD}"),)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Embed(pb.EmbedRequest(inputs=["x"]), metadata=md, timeout=10)
        assert err.value.code() == grpc.StatusCode.INTERNAL
        assert "the model fell over" in err.value.details()
    assert "Embed failed" in logs.text  # it was logged, with its traceback...
    assert_no_secret(logs.text, err.value.details())  # ...but not the token


async def test_no_tokens_means_auth_is_off() -> None:
    assert not TokenAuth([]).enabled and not TokenAuth(["", ""]).enabled
    async with serving(auth=TokenAuth([])) as (target, _, _), grpc.aio.insecure_channel(target) as channel:
        resp = await pb_grpc.EmbeddingServiceStub(channel).Embed(pb.EmbedRequest(inputs=["x"]), timeout=10)
        assert len(resp.embeddings) == 1


def test_tokens_from_the_environment_and_a_token_file(tmp_path: Path) -> None:
    file = tmp_path / "tokens"
    file.write_text(f"{GOOD}\n\n  {OTHER_GOOD}  \n")
    auth = TokenAuth.from_env({"EMBEDPOOL_TOKEN_FILE": str(file)})
    assert auth.enabled
    for token in (GOOD, OTHER_GOOD):
        auth.check([("authorization", f"Bearer {token}")])
    auth = TokenAuth.from_env({"EMBEDPOOL_TOKENS": f" {GOOD} , ,{OTHER_GOOD}", "EMBEDPOOL_TOKEN_FILE": ""})
    auth.check([("authorization", f"Bearer {OTHER_GOOD}")])
    auth.check([("authorization", f"Bearer {GOOD}".encode())])  # binary metadata values too
    assert not TokenAuth.from_env({}).enabled
    with pytest.raises(Exception) as err:
        auth.check([("authorization", f"Bearer {WRONG}")])
    assert_no_secret(str(err.value), repr(err.value))
    assert_no_secret(repr(auth), str(vars(auth).keys()))
    with pytest.raises(FileNotFoundError):  # a configured but missing file fails loudly at startup
        TokenAuth.from_env({"EMBEDPOOL_TOKEN_FILE": str(tmp_path / "missing")})


# ---- the Ray-proxy path: ingress.Router's methods, without Ray ----------------------------------


async def test_the_ray_proxy_path_checks_the_same_tokens(logs: pytest.LogCaptureFixture) -> None:
    from embedpool.server.serving.router import Router

    class Unstarted(Router.func_or_class):  # type: ignore[misc, name-defined]
        def __del__(self) -> None:  # nothing was started: nothing to drain
            pass

    async with serving(auth=TokenAuth([])) as (_, core, backend):
        router = object.__new__(Unstarted)
        router.core, router.auth, router.statuses = core, TokenAuth([GOOD]), {"": 1}
        router.metrics = type("NoMetrics", (), {"request": lambda *a: None})()
        for md in BAD_METADATA.values():
            for method, request in UNARY_CALLS.items():
                ctx = ProxyContext(md)
                await getattr(router, method)(request, ctx)
                assert ctx.code == grpc.StatusCode.UNAUTHENTICATED, method
                assert_no_secret(ctx.details)

            async def one() -> Any:
                yield pb.EmbedStreamRequest(request=UNARY_CALLS["Embed"])

            ctx = ProxyContext(md)
            assert [r async for r in router.EmbedStream(one(), ctx)] == []
            assert ctx.code == grpc.StatusCode.UNAUTHENTICATED
        assert backend.seen == []
        ctx = ProxyContext((("authorization", f"Bearer {GOOD}"),))
        resp = await router.Embed(UNARY_CALLS["Embed"], ctx)
        assert ctx.code is None and len(resp.embeddings) == 1
        # Health through the proxy needs no token.
        ctx = ProxyContext(())
        assert (await router.Check(health_pb2.HealthCheckRequest(service=""), ctx)).status == 1
    assert_no_secret(logs.text)


async def test_the_ray_proxy_path_holds_messages_to_the_pools_size_limit() -> None:
    # Ray's proxy accepts messages up to 2 GiB; the pool's port stops at limits.max_message_bytes.
    from embedpool.server.serving.router import Router

    class Unstarted(Router.func_or_class):  # type: ignore[misc, name-defined]
        def __del__(self) -> None:
            pass

    async with serving(max_message_bytes=1024) as (_, core, backend):
        router = object.__new__(Unstarted)
        router.core, router.auth = core, TokenAuth([])
        router.metrics = type("NoMetrics", (), {"request": lambda *a: None})()
        ctx = ProxyContext(())
        await router.Embed(pb.EmbedRequest(inputs=["x" * 2000]), ctx)
        assert ctx.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert ctx.details.startswith("Received message larger than max (") and ctx.trailers == []

        async def stream() -> Any:
            yield pb.EmbedStreamRequest(request_id="small", request=pb.EmbedRequest(inputs=["x"]))
            yield pb.EmbedStreamRequest(request_id="big", request=pb.EmbedRequest(inputs=["x" * 2000]))

        ctx = ProxyContext(())
        [r async for r in router.EmbedStream(stream(), ctx)]
        assert ctx.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in ctx.details
        assert "x" * 2000 not in backend.seen
