"""Faults, on the catalogue's `recording-test` model (tests/integration/recording_model.py),
so that killing or stalling it leaves every other test's model alone.

- A model replica's process is SIGKILLed while a client with retries is under load: Ray
  Serve starts a new one, every request comes home, and every answer is its own
  request's (each vector is checked against that text's reference, taken before the
  kill; nothing is lost, duplicated or swapped).
- A request whose client gives up (cancel, or its deadline passes) while it waits in the
  Router's queue never reaches the model: its texts are not in the model's record.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid

import grpc
import numpy as np
import pytest

from embedpool import AsyncEmbeddingClient
from embedpool.errors import DeadlineExceededError
from embedpool.v1 import embedding_service_pb2 as pb
from embedpool.v1 import embedding_service_pb2_grpc as pb_grpc

from .conftest import Pool
from .pool_processes import replica_pids
from .recording_model import recorded, reference_vector, texts_seen

pytestmark = pytest.mark.integration

MODEL = "recording-test"
DEPLOYMENT = "recording-test--custom-cpu"
SELECTOR = pb.ModelSelector(model=MODEL)


def normalized(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


async def test_a_killed_replica_is_replaced_and_every_request_gets_its_own_answer(pool: Pool) -> None:
    run = uuid.uuid4().hex[:8]
    texts = [f"fault {run} text {i}" for i in range(200)]
    client = AsyncEmbeddingClient(
        target=pool.target, model=MODEL, timeout=180, retries=40, retry_backoff=0.1, embed_batch_size=8
    )
    async with client:
        # References from the pool itself, before anything goes wrong (and they are the model's).
        before = (await client.embed(texts)).embeddings
        assert np.allclose(before, normalized(np.stack([reference_vector(t) for t in texts])), atol=1e-6)
        reference = dict(zip(texts, before, strict=True))

        (pid,) = replica_pids(DEPLOYMENT)
        done: list[tuple[list[str], np.ndarray, float]] = []
        stop = asyncio.Event()
        rng = np.random.default_rng(0)

        async def worker(n: int) -> None:
            while not stop.is_set():
                picked = [texts[int(i)] for i in rng.integers(0, len(texts), size=1 + n % 5)]
                if n % 8 == 0:
                    picked.append("sleep:0.2")  # keep batches in flight at the moment of the kill
                started = time.monotonic()
                result = await client.embed(picked)  # raises if any request is lost for good
                done.append((picked, result.embeddings, time.monotonic() - started))

        workers = [asyncio.create_task(worker(n)) for n in range(32)]
        await asyncio.sleep(1.0)
        served_before_kill = len(done)
        killed_at = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        # Run until a new replica has served plenty of requests.
        deadline = killed_at + 150
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            pids = replica_pids(DEPLOYMENT)
            if pids and pids != [pid] and len(done) > served_before_kill + 200:
                break
        stop.set()
        await asyncio.gather(*workers)  # every request has come home (or this raises)
        recovered_s = time.monotonic() - killed_at

    new_pids = replica_pids(DEPLOYMENT)
    assert new_pids and pid not in new_pids, (pid, new_pids)
    slowest = max(took for _, _, took in done)
    spanning = sum(1 for _, _, took in done if took > 2.0)
    print(
        f"\nkilled replica pid {pid}; new pid {new_pids}; {len(done)} requests "
        f"({served_before_kill} before the kill), {spanning} took over 2 s (retried across the "
        f"restart), slowest {slowest:.1f} s; run ended {recovered_s:.1f} s after the kill"
    )
    assert len(done) > served_before_kill + 200
    for picked, vectors, _ in done:
        assert vectors.shape == (len(picked), 32)
        for text, vector in zip(picked, vectors, strict=True):
            want = reference.get(text, normalized(reference_vector(text)))
            assert np.allclose(vector, want, atol=1e-6), text


async def busy(stub: pb_grpc.EmbeddingServiceStub, run: str) -> list[grpc.aio.UnaryUnaryCall]:
    """Two slow requests: the Router's two batch slots for the variant are taken for ~4 s."""
    calls = []
    for i in range(2):
        calls.append(
            stub.Embed(pb.EmbedRequest(model=SELECTOR, inputs=["sleep:2", f"busy {run} {i}"]), timeout=60)
        )
        await asyncio.sleep(0.2)
    return calls


async def test_cancelled_and_expired_requests_never_reach_the_model(pool: Pool) -> None:
    run = uuid.uuid4().hex[:8]
    expired = [f"expired {run} {i}" for i in range(3)]
    cancelled = [f"cancelled {run} {i}" for i in range(3)]
    client_timeout = [f"client timeout {run} {i}" for i in range(3)]
    async with grpc.aio.insecure_channel(pool.target) as channel:
        stub = pb_grpc.EmbeddingServiceStub(channel)
        slow = await busy(stub, run)

        # 1. A deadline that passes while the request waits in the Router's queue.
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Embed(pb.EmbedRequest(model=SELECTOR, inputs=expired), timeout=0.5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        # 2. A client that cancels its call.
        call = stub.Embed(pb.EmbedRequest(model=SELECTOR, inputs=cancelled), timeout=60)
        await asyncio.sleep(0.3)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

        # 3. The Python client's own deadline (timeout=...), retries included.
        async with AsyncEmbeddingClient(target=pool.target, model=MODEL, timeout=0.5) as client:
            with pytest.raises(DeadlineExceededError):
                await client.embed(client_timeout)

        for c in slow:  # the replica finishes its slow work...
            assert len((await c).embeddings) == 2
        after = [f"after {run}"]  # ...and serves the next request
        assert (
            len((await stub.Embed(pb.EmbedRequest(model=SELECTOR, inputs=after), timeout=60)).embeddings) == 1
        )

    seen = set(texts_seen())
    assert {f"busy {run} 0", f"busy {run} 1", f"after {run}"} <= seen  # the record works
    for text in expired + cancelled + client_timeout:
        assert recorded(text) not in seen, f"{text!r} reached the model"
