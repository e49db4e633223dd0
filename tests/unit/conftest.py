"""Shared settings for the unit tests: offline hub, the 'slow' marker, and the fake pool."""

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


# ---- the fake pool: the real core and gRPC front over a fake model (fake_backend.py) ----

import asyncio  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable, Coroutine, Iterable, Iterator  # noqa: E402
from contextlib import AbstractAsyncContextManager, ExitStack  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import pytest  # noqa: E402
from google.protobuf.message import Message  # noqa: E402

from embedpool import EmbeddingClient  # noqa: E402
from tests.unit.fake_backend import FakeBackend, RecordingAuth, RecordingCore, serving  # noqa: E402

T = TypeVar("T")
# The fake pool's max_inputs_per_request: small, so that a few texts make several sub-batches.
MAX_INPUTS = 7


class LoopThread:
    """One event loop on a daemon thread for the whole session. The fake pools run on it, so a
    blocking client in the test's thread and an asyncio client on the test's loop both reach
    them, and a test's own loop never has to serve while the test blocks."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-pool", daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def enter(self, stack: ExitStack, cm: AbstractAsyncContextManager[T]) -> T:
        """Enter ``cm`` on the loop; ``stack`` exits it there."""
        value = self.run(cm.__aenter__())
        stack.callback(lambda: self.run(cm.__aexit__(None, None, None)))
        return value

    def close(self) -> None:
        async def cancel_leftovers() -> None:  # e.g. a fake model still sleeping for a call given up
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(cancel_leftovers())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


@dataclass
class Pool:
    """One fake pool as the tests see it: where to call it, and what reached it."""

    target: str
    core: RecordingCore
    backend: FakeBackend
    auth: RecordingAuth

    @property
    def calls(self) -> list[tuple[str, Message]]:
        """(method, request) for each call that got past auth, in arrival order."""
        return self.core.calls

    def calls_of(self, method: str) -> list[Any]:
        return self.core.calls_of(method)

    @property
    def embed_batch_sizes(self) -> list[int]:
        """Inputs per Embed request, in arrival order."""
        return [len(request.item.texts) for request in self.calls_of("Embed")]

    @property
    def metadata(self) -> list[dict[str, str]]:
        """Each call's metadata (auth's view: refused calls too), in arrival order."""
        return self.auth.metadata


StartPool = Callable[..., Pool]
# Runs an async server context on the pool's loop until the test ends; returns what it yields.
Serve = Callable[[AbstractAsyncContextManager[Any]], Any]


@pytest.fixture(scope="session")
def pool_loop() -> Iterator[LoopThread]:
    loop = LoopThread()
    yield loop
    loop.close()


@pytest.fixture
def serve(pool_loop: LoopThread) -> Iterator[Serve]:
    """Runs an async server context (fake_backend.serving(...), serving_servicer(...)) on the
    pool's loop for the rest of the test; returns what it yields."""
    with ExitStack() as stack:
        yield lambda cm: pool_loop.enter(stack, cm)


@pytest.fixture
def start_pool(serve: Serve) -> StartPool:
    """Starts a fake pool for this test: ``start_pool(tokens=[...], tls=(key, cert), delay=...)``;
    it stops when the test ends."""

    def start(
        *,
        tokens: Iterable[str] = (),
        tls: tuple[bytes, bytes] | None = None,
        delay: float = 0.0,
        max_inputs: int = MAX_INPUTS,
        max_message_bytes: int = 4 * 1024 * 1024,
    ) -> Pool:
        auth = RecordingAuth(tokens)
        target, core, backend = serve(
            serving(
                FakeBackend(delay),
                auth=auth,
                tls=tls,
                max_inputs=max_inputs,
                max_message_bytes=max_message_bytes,
            )
        )
        return Pool(target, core, backend, auth)

    return start


@pytest.fixture
def pool(start_pool: StartPool) -> Pool:
    """A fresh fake pool for each test: records calls, can be told to fail or to be slow."""
    return start_pool()


@pytest.fixture
def target(pool: Pool) -> str:
    return pool.target


@pytest.fixture
def client(target: str) -> Iterator[EmbeddingClient]:
    with EmbeddingClient(target=target, timeout=10, retry_backoff=0.001) as c:
        yield c
