"""Error mapping, retries, deadlines and credentials, against the fake pool."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from embedpool import (
    AsyncEmbeddingClient,
    AuthenticationError,
    DeadlineExceededError,
    EmbeddingClient,
    EmbedpoolError,
    InvalidInputError,
    ModelNotFoundError,
    OverloadedError,
    PoolUnavailableError,
)
from embedpool.server import errors
from embedpool.server.fronts import grpc_server as grpc_front
from embedpool.server.fronts import outcome
from embedpool.server.fronts.auth import TokenAuth
from embedpool.server.fronts.outcome import no_count
from embedpool.v1 import embedding_service_pb2 as pb
from tests.unit.conftest import Pool, Serve, StartPool
from tests.unit.fake_backend import MAX_TOKENS, FakeBackend, make_core, serving_servicer

C = grpc.StatusCode


def assert_raised(
    info: pytest.ExceptionInfo[EmbedpoolError], code: grpc.StatusCode, cls: type, message: str
) -> None:
    err = info.value
    assert type(err) is cls
    assert str(err) == message and err.details == message and err.code == code
    assert isinstance(err.__cause__, grpc.RpcError)
    assert err.__cause__.code() == code


@pytest.mark.parametrize(
    ("error", "code", "cls"),
    [
        (errors.InvalidArgument, C.INVALID_ARGUMENT, InvalidInputError),
        (errors.NotFound, C.NOT_FOUND, ModelNotFoundError),
        (errors.Overloaded, C.RESOURCE_EXHAUSTED, OverloadedError),
        (errors.Unavailable, C.UNAVAILABLE, PoolUnavailableError),
        (errors.DeadlineExceeded, C.DEADLINE_EXCEEDED, DeadlineExceededError),
        (errors.Unauthenticated, C.UNAUTHENTICATED, AuthenticationError),
        (errors.EmbedpoolError, C.INTERNAL, EmbedpoolError),
    ],
)
def test_each_pool_error_maps_to_its_class(
    target: str, pool: Pool, error: type[errors.EmbedpoolError], code: grpc.StatusCode, cls: type
) -> None:
    message = f"the pool says {code.name.lower()}"
    pool.backend.fail_next(*[error(message)] * 4)
    with EmbeddingClient(target=target, retries=0) as client, pytest.raises(EmbedpoolError) as info:
        client.get_text_embedding("x")
    assert_raised(info, code, cls, message)
    assert len(pool.calls_of("Embed")) == 1


class Refuses(grpc_front.EmbeddingServicer):
    """The pool's servicer, answering every Embed with a status the pool itself never sends."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(make_core(FakeBackend()), TokenAuth([]), no_count)
        self.code, self.message = code, message

    async def Embed(self, request: pb.EmbedRequest, context: Any) -> pb.EmbedResponse:
        await context.abort(self.code, self.message)
        raise AssertionError("abort raises")


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (C.OUT_OF_RANGE, InvalidInputError),
        (C.FAILED_PRECONDITION, InvalidInputError),
        (C.PERMISSION_DENIED, AuthenticationError),
        (C.CANCELLED, EmbedpoolError),
        (C.UNIMPLEMENTED, EmbedpoolError),
    ],
)
def test_other_codes_map_to_their_class(serve: Serve, code: grpc.StatusCode, cls: type) -> None:
    message = f"the server says {code.name.lower()}"
    target = serve(serving_servicer(Refuses(code, message)))
    with EmbeddingClient(target=target, retries=0) as client, pytest.raises(EmbedpoolError) as info:
        client.get_text_embedding("x")
    assert_raised(info, code, cls, message)


def test_message_size_error_is_not_retried(target: str, pool: Pool, start_pool: StartPool) -> None:
    options = [("grpc.max_receive_message_length", 10)]  # the caller's option replaces the client's
    with (
        EmbeddingClient(target=target, channel_options=options) as client,
        pytest.raises(InvalidInputError) as info,
    ):
        client.get_text_embedding("x")
    assert "larger than max" in str(info.value)
    assert info.value.code == C.RESOURCE_EXHAUSTED
    assert len(pool.calls_of("Embed")) == 1
    # The pool's own limit on what it receives (limits.max_message_bytes) fails the same way.
    small = start_pool(max_message_bytes=1024)
    with EmbeddingClient(target=small.target) as client, pytest.raises(InvalidInputError) as info:
        client.get_text_embedding("x" * 2000)
    assert "larger than max" in str(info.value) and info.value.code == C.RESOURCE_EXHAUSTED
    assert small.calls == [] and small.backend.seen == []


def test_real_server_validation_error(client: EmbeddingClient) -> None:
    long = " ".join(["word"] * (MAX_TOKENS * 2))
    with pytest.raises(InvalidInputError, match=f"the model's limit is {MAX_TOKENS}") as info:
        client.embed([long], truncate=False)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"input 0 has {MAX_TOKENS * 2 + 2} tokens")
    with pytest.raises(InvalidInputError, match=r"inputs\[0\] is an empty string"):
        client.get_text_embedding("")


def test_unknown_model(target: str) -> None:
    with (
        EmbeddingClient(target=target, model="no-such-model") as client,
        pytest.raises(ModelNotFoundError, match="unknown model 'no-such-model'; available: fake"),
    ):
        client.get_text_embedding_batch(["a", "b"])
    with EmbeddingClient(target=target) as client, pytest.raises(ModelNotFoundError, match="no-such"):
        client.get_model("no-such")


@pytest.mark.parametrize("error", [errors.Unavailable, errors.Overloaded])
def test_retryable_codes_are_retried(
    client: EmbeddingClient, pool: Pool, error: type[errors.EmbedpoolError]
) -> None:
    pool.backend.fail_next(error("busy"), error("busy"))
    assert len(client.get_text_embedding("x")) > 0
    assert len(pool.calls_of("Embed")) == 3 and len(pool.backend.batches) == 3


def test_retries_run_out(client: EmbeddingClient, pool: Pool) -> None:
    pool.backend.fail_next(*[errors.Unavailable("still down")] * 10)
    with pytest.raises(PoolUnavailableError, match="still down"):
        client.get_text_embedding("x")
    assert len(pool.calls_of("Embed")) == 4  # 1 + retries=3


def test_invalid_argument_is_not_retried(client: EmbeddingClient, pool: Pool) -> None:
    pool.backend.fail_next(errors.InvalidArgument("bad"), errors.InvalidArgument("bad"))
    with pytest.raises(InvalidInputError):
        client.get_text_embedding("x")
    assert len(pool.calls_of("Embed")) == 1


def test_retry_after_hint_is_honored(client: EmbeddingClient, pool: Pool) -> None:
    # The pool answers Overloaded with a retry-after-ms trailer; the client's own backoff is 1 ms.
    pool.backend.fail_next(errors.Overloaded("overloaded"))
    start = time.monotonic()
    client.get_text_embedding("x")
    assert time.monotonic() - start >= outcome.RETRY_AFTER_MS / 1000
    assert len(pool.calls_of("Embed")) == 2


def test_retry_hint_beyond_deadline_raises_deadline(
    target: str, pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outcome, "RETRY_AFTER_MS", 5000)  # the pool's hint: wait 5 s
    pool.backend.fail_next(errors.Overloaded("overloaded"))
    start = time.monotonic()
    with EmbeddingClient(target=target, timeout=0.5) as client, pytest.raises(DeadlineExceededError) as info:
        client.get_text_embedding("x")
    assert time.monotonic() - start < 0.5
    assert "RESOURCE_EXHAUSTED: overloaded" in str(info.value)
    assert isinstance(info.value.__cause__, grpc.RpcError)
    assert len(pool.calls_of("Embed")) == 1


def test_deadline_covers_the_whole_call(target: str, pool: Pool) -> None:
    pool.backend.delay = 0.15
    pool.backend.fail_next(*[errors.Unavailable("down")] * 10)
    start = time.monotonic()
    with (
        EmbeddingClient(target=target, timeout=0.4, retries=10, retry_backoff=0.01) as client,
        pytest.raises(DeadlineExceededError),
    ):
        client.get_text_embedding("x")
    assert time.monotonic() - start < 1.0
    assert len(pool.calls_of("Embed")) <= 3


def test_slow_server_hits_the_grpc_deadline(target: str, pool: Pool) -> None:
    pool.backend.delay = 1.0
    with EmbeddingClient(target=target, timeout=0.2) as client, pytest.raises(DeadlineExceededError):
        client.get_text_embedding("x")


def test_one_failed_sub_batch_fails_the_call(target: str, pool: Pool) -> None:
    pool.backend.fail_next(errors.EmbedpoolError("replica crashed"))
    with EmbeddingClient(target=target) as client, pytest.raises(EmbedpoolError, match="replica crashed"):
        client.get_text_embedding_batch([f"t{i}" for i in range(30)])


def test_unreachable_pool() -> None:
    with (
        EmbeddingClient(target="127.0.0.1:1", timeout=2, retries=1, retry_backoff=0.01) as client,
        pytest.raises(PoolUnavailableError),
    ):
        client.get_text_embedding("x")


def test_bearer_token_metadata(start_pool: StartPool, monkeypatch: pytest.MonkeyPatch) -> None:
    pool = start_pool(tokens=["s3cret"])
    with (
        EmbeddingClient(target=pool.target) as client,
        pytest.raises(AuthenticationError, match="missing 'authorization: Bearer <token>' metadata"),
    ):
        client.get_text_embedding("x")
    assert pool.calls == []  # refused before the core
    with EmbeddingClient(target=pool.target, token="s3cret", metadata=[("x-team", "search")]) as client:
        client.get_text_embedding("x")
    assert pool.metadata[-1]["authorization"] == "Bearer s3cret"
    assert pool.metadata[-1]["x-team"] == "search"
    monkeypatch.setenv("EMBEDPOOL_TOKEN", "s3cret")
    with EmbeddingClient(target=pool.target) as client:
        client.get_text_embedding("x")
    assert pool.metadata[-1]["authorization"] == "Bearer s3cret"
    assert len(pool.calls_of("Embed")) == 2


async def test_async_errors_and_retries(start_pool: StartPool) -> None:
    pool = start_pool(tokens=["tok"])
    pool.backend.fail_next(errors.Unavailable("blip"))
    async with AsyncEmbeddingClient(target=pool.target, token="tok", retry_backoff=0.001) as client:
        assert len(await client.aget_text_embedding("x")) > 0
        assert len(pool.calls_of("Embed")) == 2
        pool.backend.fail_next(errors.InvalidArgument("nope"))
        with pytest.raises(InvalidInputError, match="nope") as info:
            await client.aget_text_embedding_batch([f"t{i}" for i in range(20)])
        assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)
        # More than 1 + retries: a cancelled sub-batch of the call above may still reach the pool.
        pool.backend.fail_next(*[errors.Overloaded("full")] * 10)
        with pytest.raises(OverloadedError, match="full"):
            await client.aget_query_embedding("x")
    pool.backend.delay = 1.0
    async with AsyncEmbeddingClient(target=pool.target, token="tok", timeout=0.2) as client:
        with pytest.raises(DeadlineExceededError):
            await client.aget_query_embedding("x")


def _make_cert(tmp: Path) -> tuple[bytes, bytes] | None:
    openssl = shutil.which("openssl")
    if openssl is None:
        return None
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    result = subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        return None
    return key.read_bytes(), cert.read_bytes()


def test_tls_with_token_call_credentials(tmp_path: Path, start_pool: StartPool) -> None:
    pair = _make_cert(tmp_path)
    if pair is None:
        pytest.skip("openssl cannot make a test certificate here")
    key, cert = pair
    pool = start_pool(tokens=["tls-token"], tls=(key, cert))
    with EmbeddingClient(
        target=pool.target, root_certificates=tmp_path / "cert.pem", token="tls-token"
    ) as client:
        assert len(client.get_text_embedding("over tls")) > 0
    with (
        EmbeddingClient(target=pool.target, root_certificates=cert.decode(), token="wrong") as client,
        pytest.raises(AuthenticationError, match="not valid for this pool"),
    ):
        client.get_text_embedding("over tls")
    assert pool.metadata[0]["authorization"] == "Bearer tls-token"
    assert pool.metadata[1]["authorization"] == "Bearer wrong"
    assert len(pool.calls_of("Embed")) == 1
