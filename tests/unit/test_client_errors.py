"""Error mapping, retries, deadlines and credentials, against the fake pool."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

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
from tests.fakes import MAX_TOKENS, Failure, FakePoolServer, FakeServicer

C = grpc.StatusCode


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (C.INVALID_ARGUMENT, InvalidInputError),
        (C.OUT_OF_RANGE, InvalidInputError),
        (C.FAILED_PRECONDITION, InvalidInputError),
        (C.NOT_FOUND, ModelNotFoundError),
        (C.RESOURCE_EXHAUSTED, OverloadedError),
        (C.UNAVAILABLE, PoolUnavailableError),
        (C.DEADLINE_EXCEEDED, DeadlineExceededError),
        (C.UNAUTHENTICATED, AuthenticationError),
        (C.PERMISSION_DENIED, AuthenticationError),
        (C.INTERNAL, EmbedpoolError),
        (C.CANCELLED, EmbedpoolError),
        (C.UNIMPLEMENTED, EmbedpoolError),
    ],
)
def test_each_code_maps_to_its_class(
    target: str, pool: FakeServicer, code: grpc.StatusCode, cls: type
) -> None:
    message = f"the pool says {code.name.lower()}"
    pool.fail("Embed", *[Failure(code, message)] * 4)
    with EmbeddingClient(target=target, retries=0) as client, pytest.raises(EmbedpoolError) as info:
        client.get_text_embedding("x")
    err = info.value
    assert type(err) is cls
    assert str(err) == message and err.details == message and err.code == code
    assert isinstance(err.__cause__, grpc.RpcError)
    assert err.__cause__.code() == code


def test_message_size_error_is_not_retried(target: str, pool: FakeServicer) -> None:
    options = [("grpc.max_receive_message_length", 10)]  # the caller's option replaces the client's
    with (
        EmbeddingClient(target=target, channel_options=options) as client,
        pytest.raises(InvalidInputError) as info,
    ):
        client.get_text_embedding("x")
    assert "larger than max" in str(info.value)
    assert info.value.code == C.RESOURCE_EXHAUSTED
    assert len(pool.calls_of("Embed")) == 1


def test_real_server_validation_error(client: EmbeddingClient) -> None:
    long = " ".join(["word"] * (MAX_TOKENS * 2))
    with pytest.raises(InvalidInputError, match=f"more than the model's {MAX_TOKENS}") as info:
        client.embed([long], truncate=False)
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidInputError, match="input 0 is empty"):
        client.get_text_embedding("")


def test_unknown_model(target: str, pool: FakeServicer) -> None:
    with EmbeddingClient(target=target, model="no-such-model") as client, pytest.raises(ModelNotFoundError):
        client.get_text_embedding_batch(["a", "b"])
    with EmbeddingClient(target=target) as client, pytest.raises(ModelNotFoundError, match="no-such"):
        client.get_model("no-such")


@pytest.mark.parametrize("code", [C.UNAVAILABLE, C.RESOURCE_EXHAUSTED])
def test_retryable_codes_are_retried(
    client: EmbeddingClient, pool: FakeServicer, code: grpc.StatusCode
) -> None:
    pool.fail("Embed", Failure(code, "busy"), Failure(code, "busy"))
    assert len(client.get_text_embedding("x")) > 0
    assert len(pool.calls_of("Embed")) == 3


def test_retries_run_out(client: EmbeddingClient, pool: FakeServicer) -> None:
    pool.fail("Embed", *[Failure(C.UNAVAILABLE, "still down")] * 10)
    with pytest.raises(PoolUnavailableError, match="still down"):
        client.get_text_embedding("x")
    assert len(pool.calls_of("Embed")) == 4  # 1 + retries=3


def test_invalid_argument_is_not_retried(client: EmbeddingClient, pool: FakeServicer) -> None:
    pool.fail("Embed", Failure(C.INVALID_ARGUMENT, "bad"), Failure(C.INVALID_ARGUMENT, "bad"))
    with pytest.raises(InvalidInputError):
        client.get_text_embedding("x")
    assert len(pool.calls_of("Embed")) == 1


def test_retry_after_hint_is_honored(client: EmbeddingClient, pool: FakeServicer) -> None:
    pool.fail("Embed", Failure(C.RESOURCE_EXHAUSTED, "overloaded", (("retry-after-ms", "300"),)))
    start = time.monotonic()
    client.get_text_embedding("x")
    assert time.monotonic() - start >= 0.3


def test_retry_hint_beyond_deadline_raises_deadline(target: str, pool: FakeServicer) -> None:
    pool.fail("Embed", Failure(C.RESOURCE_EXHAUSTED, "overloaded", (("retry-after-ms", "5000"),)))
    start = time.monotonic()
    with EmbeddingClient(target=target, timeout=0.5) as client, pytest.raises(DeadlineExceededError) as info:
        client.get_text_embedding("x")
    assert time.monotonic() - start < 0.5
    assert "RESOURCE_EXHAUSTED: overloaded" in str(info.value)
    assert isinstance(info.value.__cause__, grpc.RpcError)


def test_deadline_covers_the_whole_call(target: str, pool: FakeServicer) -> None:
    pool.delays["Embed"] = 0.15
    pool.fail("Embed", *[Failure(C.UNAVAILABLE, "down")] * 10)
    start = time.monotonic()
    with (
        EmbeddingClient(target=target, timeout=0.4, retries=10, retry_backoff=0.01) as client,
        pytest.raises(DeadlineExceededError),
    ):
        client.get_text_embedding("x")
    assert time.monotonic() - start < 1.0
    assert len(pool.calls_of("Embed")) <= 3


def test_slow_server_hits_the_grpc_deadline(target: str, pool: FakeServicer) -> None:
    pool.delays["Embed"] = 1.0
    with EmbeddingClient(target=target, timeout=0.2) as client, pytest.raises(DeadlineExceededError):
        client.get_text_embedding("x")


def test_one_failed_sub_batch_fails_the_call(target: str, pool: FakeServicer) -> None:
    pool.fail("Embed", Failure(C.INTERNAL, "replica crashed"))
    with EmbeddingClient(target=target) as client, pytest.raises(EmbedpoolError, match="replica crashed"):
        client.get_text_embedding_batch([f"t{i}" for i in range(30)])


def test_unreachable_pool(pool: FakeServicer) -> None:
    with (
        EmbeddingClient(target="127.0.0.1:1", timeout=2, retries=1, retry_backoff=0.01) as client,
        pytest.raises(PoolUnavailableError),
    ):
        client.get_text_embedding("x")


def test_bearer_token_metadata(target: str, pool: FakeServicer, monkeypatch: pytest.MonkeyPatch) -> None:
    pool.required_token = "s3cret"
    with EmbeddingClient(target=target) as client, pytest.raises(AuthenticationError, match="bearer"):
        client.get_text_embedding("x")
    with EmbeddingClient(target=target, token="s3cret", metadata=[("x-team", "search")]) as client:
        client.get_text_embedding("x")
    assert pool.calls[-1].metadata["authorization"] == "Bearer s3cret"
    assert pool.calls[-1].metadata["x-team"] == "search"
    monkeypatch.setenv("EMBEDPOOL_TOKEN", "s3cret")
    with EmbeddingClient(target=target) as client:
        client.get_text_embedding("x")
    assert pool.calls[-1].metadata["authorization"] == "Bearer s3cret"


async def test_async_errors_and_retries(target: str, pool: FakeServicer) -> None:
    pool.fail("Embed", Failure(C.UNAVAILABLE, "blip"))
    pool.required_token = "tok"
    async with AsyncEmbeddingClient(target=target, token="tok", retry_backoff=0.001) as client:
        assert len(await client.aget_text_embedding("x")) > 0
        assert len(pool.calls_of("Embed")) == 2
        pool.fail("Embed", Failure(C.INVALID_ARGUMENT, "nope"))
        with pytest.raises(InvalidInputError, match="nope") as info:
            await client.aget_text_embedding_batch([f"t{i}" for i in range(20)])
        assert isinstance(info.value.__cause__, grpc.aio.AioRpcError)
        # More than 1 + retries: a cancelled sub-batch of the call above may still reach the pool.
        pool.fail("Embed", *[Failure(C.RESOURCE_EXHAUSTED, "full")] * 10)
        with pytest.raises(OverloadedError, match="full"):
            await client.aget_query_embedding("x")
    pool.delays["Embed"] = 1.0
    async with AsyncEmbeddingClient(target=target, token="tok", timeout=0.2) as client:
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


def test_tls_with_token_call_credentials(tmp_path: Path) -> None:
    pair = _make_cert(tmp_path)
    if pair is None:
        pytest.skip("openssl cannot make a test certificate here")
    key, cert = pair
    credentials = grpc.ssl_server_credentials([(key, cert)])
    servicer = FakeServicer(required_token="tls-token")
    with FakePoolServer(servicer, server_credentials=credentials) as server:
        with EmbeddingClient(
            target=server.target, root_certificates=tmp_path / "cert.pem", token="tls-token"
        ) as client:
            assert len(client.get_text_embedding("over tls")) > 0
        with (
            EmbeddingClient(target=server.target, root_certificates=cert.decode(), token="wrong") as client,
            pytest.raises(AuthenticationError),
        ):
            client.get_text_embedding("over tls")
    assert servicer.calls[0].metadata["authorization"] == "Bearer tls-token"
