"""Shared settings for the unit tests: offline hub, the 'slow' marker."""

from __future__ import annotations

import os

# The tests use local weights only (the bundled all-MiniLM-L6-v2); never reach for the hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):  # type: ignore[no-untyped-def]
    config.addinivalue_line(
        "markers", "slow: exports ONNX/OpenVINO models (once per session); deselect with -m 'not slow'"
    )


# ---- the fake pool: a real grpc.aio server with a fake model (tests/fakes.py) ----

from collections.abc import Iterator  # noqa: E402

import pytest  # noqa: E402

from embedpool import EmbeddingClient  # noqa: E402
from tests.fakes import FakePoolServer, FakeServicer  # noqa: E402


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakePoolServer]:
    with FakePoolServer() as server:
        yield server


@pytest.fixture
def pool(fake_server: FakePoolServer) -> FakeServicer:
    """The fake servicer, reset for each test: records calls, can be told to fail."""
    fake_server.servicer.reset()
    return fake_server.servicer


@pytest.fixture
def target(fake_server: FakePoolServer, pool: FakeServicer) -> str:
    return fake_server.target


@pytest.fixture
def client(target: str) -> Iterator[EmbeddingClient]:
    with EmbeddingClient(target=target, timeout=10, retry_backoff=0.001) as c:
        yield c
