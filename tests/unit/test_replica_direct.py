"""The replica's entry for direct batches: straight to the model when idle, else through
@serve.batch's queue (to be merged with what waits there); on a stream when it runs beside
another batch and the model has streams. No Ray: the deployment's class with its model calls
replaced."""

from __future__ import annotations

import asyncio
from typing import Any

from embedpool.server.direct.receiver import DirectServer
from embedpool.server.serving.replica import ModelReplica
from embedpool.server.types import EmbedItem, EmbedOutput


class _Replica:
    """ModelReplica's methods on an object without Ray or a model behind it."""

    _embed_direct = ModelReplica.func_or_class._embed_direct
    _embed_calls = ModelReplica.func_or_class._embed_calls

    def __init__(self, streams: bool = False) -> None:
        self._running = 0
        self._streams = object() if streams else None  # the stream threads' pool, where the model has streams
        self.direct = DirectServer(self._embed_direct)
        self.ran: list[tuple[str, int]] = []  # (path, batches running when the model was reached)
        self.release = asyncio.Event()

    async def _embed_merged(self, calls: list[list[EmbedItem]], stream: bool = False) -> list[list[Any]]:
        self.ran.append(("stream" if stream else "model", self._running))
        await self.release.wait()
        return [[EmbedOutput.__new__(EmbedOutput) for _ in call] for call in calls]

    async def embed(self, items: list[EmbedItem]) -> list[Any]:
        self.ran.append(("queue", self._running))
        return (await self._embed_calls([items]))[0]


async def test_an_idle_replica_runs_a_direct_batch_at_once_a_busy_one_queues_it() -> None:
    replica = _Replica()
    first = asyncio.ensure_future(replica._embed_direct([EmbedItem(texts=["a"])]))
    await asyncio.sleep(0)
    assert replica.ran == [("model", 1)]  # idle: no queue
    second = asyncio.ensure_future(replica._embed_direct([EmbedItem(texts=["b"]), EmbedItem(texts=["c"])]))
    await asyncio.sleep(0)
    assert replica.ran[1] == ("queue", 1)  # busy: it waits to be merged
    replica.release.set()
    assert [len(r) for r in await asyncio.gather(first, second)] == [1, 2]
    assert replica._running == 0
    await replica._embed_direct([EmbedItem(texts=["d"])])
    assert replica.ran[-1] == ("model", 1)  # idle again


async def test_batches_read_together_on_an_idle_replica_are_merged_not_run_one_by_one() -> None:
    replica = _Replica()
    replica.direct.ongoing = 2  # the receiver counts every frame it read before the first runs
    first = asyncio.ensure_future(replica._embed_direct([EmbedItem(texts=["a"])]))
    await asyncio.sleep(0)
    assert replica.ran[0] == ("queue", 0)  # another batch waits: into the queue, to meet it
    replica.release.set()
    await first


async def test_with_streams_a_batch_beside_another_or_finding_one_running_runs_on_a_stream() -> None:
    replica = _Replica(streams=True)
    replica.release.set()
    await replica._embed_direct([EmbedItem(texts=["a"])], False)
    assert replica.ran == [("model", 1)]  # alone: every thread
    await replica._embed_direct([EmbedItem(texts=["b"])], True)
    assert replica.ran[-1] == ("stream", 1)  # the Router had another batch out: a stream
    replica.release.clear()
    first = asyncio.ensure_future(replica._embed_direct([EmbedItem(texts=["c"])], False))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(replica._embed_direct([EmbedItem(texts=["d"])], False))
    await asyncio.sleep(0)
    assert replica.ran[-2:] == [("model", 1), ("stream", 2)]  # one running: beside it, not queued
    replica.release.set()
    await asyncio.gather(first, second)


async def test_without_streams_a_batch_beside_another_is_handled_as_before() -> None:
    replica = _Replica()
    replica.release.set()
    await replica._embed_direct([EmbedItem(texts=["a"])], True)
    assert replica.ran == [("model", 1)]
