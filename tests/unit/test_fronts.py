"""The one error adapter (fronts/outcome.py) and the fronts that use it, Ray's proxy path included."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from embedpool.server import errors
from embedpool.server.fronts.auth import TokenAuth
from embedpool.server.fronts.outcome import failure
from embedpool.server.service.core import Call
from embedpool.v1 import embedding_service_pb2 as pb
from tests.unit.fake_backend import FakeBackend, ProxyContext, serving

# error class -> (gRPC code, HTTP status, OpenAI error type, retry hint)
EXPECTED = {
    errors.InvalidArgument: (grpc.StatusCode.INVALID_ARGUMENT, 400, "invalid_request_error", False),
    errors.NotFound: (grpc.StatusCode.NOT_FOUND, 404, "not_found_error", False),
    errors.Overloaded: (grpc.StatusCode.RESOURCE_EXHAUSTED, 429, "rate_limit_error", True),
    errors.MessageTooLarge: (grpc.StatusCode.RESOURCE_EXHAUSTED, 413, "invalid_request_error", False),
    errors.Unavailable: (grpc.StatusCode.UNAVAILABLE, 503, "service_unavailable_error", False),
    errors.DeadlineExceeded: (grpc.StatusCode.DEADLINE_EXCEEDED, 504, "timeout_error", False),
    errors.Unauthenticated: (grpc.StatusCode.UNAUTHENTICATED, 401, "authentication_error", False),
    errors.Cancelled: (grpc.StatusCode.CANCELLED, 499, "cancelled_error", False),
    errors.EmbedpoolError: (grpc.StatusCode.INTERNAL, 500, "server_error", False),
}


@pytest.mark.parametrize("cls", list(EXPECTED))
def test_each_pool_error_maps_to_one_status_on_every_front(cls: type[errors.EmbedpoolError]) -> None:
    code, http, kind, retry = EXPECTED[cls]
    fail = failure(cls("what went wrong"), "Embed")
    assert (fail.code, fail.http_status, fail.error_type) == (code, http, kind)
    assert fail.message == "what went wrong" and fail.code_number == code.value[0]
    assert fail.trailers == ((("retry-after-ms", "100"),) if retry else ())
    envelope = fail.openai_error()["error"]
    assert (envelope["message"], envelope["type"], envelope["param"]) == ("what went wrong", kind, None)
    assert ("retry-after" in fail.http_headers) == retry
    assert ("www-authenticate" in fail.http_headers) == (code == grpc.StatusCode.UNAUTHENTICATED)


def test_every_error_class_is_in_the_table() -> None:
    own = {c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.EmbedpoolError)}
    assert own == set(EXPECTED)


def test_an_unexpected_exception_is_internal_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, "embedpool"):
        try:
            raise KeyError("boom")
        except KeyError as exc:
            fail = failure(exc, "Similarity")
    assert fail.code == grpc.StatusCode.INTERNAL and fail.http_status == 500
    assert fail.message == "internal error: KeyError: 'boom'"
    assert "Similarity failed" in caplog.text and "Traceback" in caplog.text


def proxy_router(core: Any, counted: list[tuple[str, str, str, str]]) -> Any:
    """The Router deployment's class, with its Ray-proxy methods, over a started core (no Ray)."""
    from embedpool.server.serving.router import Router

    class Unstarted(Router.func_or_class):  # type: ignore[misc, name-defined]
        def __del__(self) -> None:  # nothing was started: nothing to drain
            pass

    router = object.__new__(Unstarted)
    router.core, router.auth, router.statuses = core, TokenAuth([]), {"": 1}

    def request(method: str, model: str, variant: str, code: str, front: str) -> None:
        counted.append((method, code, variant, front))

    router.metrics = type("Metrics", (), {"request": staticmethod(request)})()
    return router


async def test_the_ray_proxy_path_answers_unexpected_errors_with_internal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = FakeBackend()
    backend.fail_with = RuntimeError("replica crashed in an unexpected way")
    counted: list[tuple[str, str, str, str]] = []
    async with serving(backend) as (_, core, _):
        router = proxy_router(core, counted)
        ctx = ProxyContext(())
        with caplog.at_level(logging.ERROR, "embedpool"):
            resp = await router.Embed(pb.EmbedRequest(inputs=["a"]), ctx)
    # Before: the exception escaped the proxy path uncounted, and Ray answered UNKNOWN.
    assert resp == pb.EmbedResponse()
    assert ctx.code == grpc.StatusCode.INTERNAL and "unexpected way" in ctx.details
    assert "Embed failed" in caplog.text and "Traceback" in caplog.text
    assert counted == [("Embed", "INTERNAL", "custom-cpu", "ray_proxy")]


async def test_the_ray_proxy_path_counts_each_embed_stream_request() -> None:
    counted: list[tuple[str, str, str, str]] = []

    async def stream() -> AsyncIterator[pb.EmbedStreamRequest]:
        yield pb.EmbedStreamRequest(request_id="ok", request=pb.EmbedRequest(inputs=["a"]))
        yield pb.EmbedStreamRequest(request_id="bad", request=pb.EmbedRequest(inputs=[]))

    async with serving() as (_, core, _):
        router = proxy_router(core, counted)
        ctx = ProxyContext(())
        out = [r async for r in router.EmbedStream(stream(), ctx)]
    assert ctx.code is None
    assert {r.request_id: r.HasField("response") for r in out} == {"ok": True, "bad": False}
    # Before: EmbedStream through Ray's proxy was not counted at all.
    assert sorted(counted) == [
        ("EmbedStream", "INVALID_ARGUMENT", "custom-cpu", "ray_proxy"),
        ("EmbedStream", "OK", "custom-cpu", "ray_proxy"),
    ]


def test_a_call_starts_untagged() -> None:
    assert Call("Embed") == Call("Embed", "grpc", "", "")
