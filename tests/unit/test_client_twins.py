"""The sync and async clients are twins kept by hand (httpx-style): this test holds them to
the same public surface.

Why by hand rather than generating the sync one (httpcore's unasync): the two sides call
different gRPC APIs (grpc.Channel's blocking multi-callables with futures vs grpc.aio's
awaitables, thread pools vs tasks for concurrency, time.sleep vs asyncio.sleep in retries),
so a token rewrite would not produce the sync client; their shared logic lives once in
_base.py, _request.py and _retry.py instead, and this test catches any drift of names,
parameters, defaults or annotations.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from embedpool import AsyncEmbeddingClient, EmbeddingClient

# async name -> sync name, where they differ (LlamaIndex's aget_*/get_*; close/aclose as httpx)
RENAMED = {"aclose": "close", "__aenter__": "__enter__", "__aexit__": "__exit__"}


def public(cls: type) -> set[str]:
    names = {n for n in dir(cls) if not n.startswith("_")}
    return names | {n for n in ("__aenter__", "__aexit__", "__enter__", "__exit__") if hasattr(cls, n)}


def sync_name(name: str) -> str:
    if name in RENAMED:
        return RENAMED[name]
    return name[1:] if name.startswith("aget_") else name


def test_every_async_method_has_its_sync_twin_and_back() -> None:
    assert {sync_name(n) for n in public(AsyncEmbeddingClient)} == public(EmbeddingClient)


def params(fn: Any) -> list[tuple[str, Any, Any, str]]:
    sig = inspect.signature(fn)
    return [(p.name, p.kind, p.default, str(p.annotation)) for p in sig.parameters.values()]


@pytest.mark.parametrize("name", sorted(public(AsyncEmbeddingClient)))
def test_twins_take_the_same_parameters(name: str) -> None:
    async_attr = inspect.getattr_static(AsyncEmbeddingClient, name)
    sync_attr = inspect.getattr_static(EmbeddingClient, sync_name(name))
    if isinstance(async_attr, property):
        assert isinstance(sync_attr, property), name
        return
    if name in RENAMED:  # context-manager protocol: the shapes differ by design
        return
    assert params(async_attr) == params(sync_attr), name
    if inspect.iscoroutinefunction(async_attr):
        # the awaited value is what the sync twin returns
        assert str(inspect.signature(async_attr).return_annotation) == str(
            inspect.signature(sync_attr).return_annotation
        ), name


def test_the_constructors_take_the_same_options() -> None:
    # the one difference by design: a caller-made channel is a grpc.aio one for the async twin
    a, s = params(AsyncEmbeddingClient.__init__), params(EmbeddingClient.__init__)
    assert [p for p in a if p[0] != "channel"] == [p for p in s if p[0] != "channel"]
    assert dict((p[0], p[3]) for p in a)["channel"] == "grpc.aio.Channel | None"
    assert dict((p[0], p[3]) for p in s)["channel"] == "grpc.Channel | None"
