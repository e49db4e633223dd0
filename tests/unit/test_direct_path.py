"""The Router -> replica direct channel: wire format, endpoint choice, fallback, auth.

Real DirectServers (asyncio TCP listeners) on 127.0.0.1 in front of the fake
backend; the Serve handle is replaced by a second fake that records what fell back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import replace

import numpy as np
import pytest

from embedpool.server.direct import receiver
from embedpool.server.direct import wire as replica_wire
from embedpool.server.direct.receiver import DirectServer
from embedpool.server.direct.sender import DirectVariantBackend, Entry
from embedpool.server.errors import (
    DeadlineExceeded,
    EmbedpoolError,
    InvalidArgument,
    MessageTooLarge,
    Overloaded,
)
from embedpool.server.serving.autoscale import DIRECT_ONGOING, POLICY, direct_aware_policy
from embedpool.server.types import EmbedItem, EmbedOutput
from tests.unit.fake_backend import FakeBackend, vector

ITEM = EmbedItem(
    texts=["héllo\x00wörld", "", "🚀 " * 3],
    input_type="query",
    prompt="p: ",
    prompt_name=None,
    truncate=True,
    truncate_left=True,
    normalize=False,
    dimensions=8,
    precision="int8",
    arrived_ns=123,
    trace="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
)
OTHER = EmbedItem(texts=["x"], prompt_name="query")  # prompt and prompt_name never come together
OUTPUT = EmbedOutput(np.arange(6, dtype=np.float32).reshape(2, 3), 3, 7, 1, 11, 22)


# ---- wire format -------------------------------------------------------------------------------


def test_items_round_trip_every_field() -> None:
    assert replica_wire.decode_items(replica_wire.encode_items([ITEM, OTHER])) == [ITEM, OTHER]


def test_every_dataclass_field_is_set_off_its_default_in_the_round_trips() -> None:
    # A field added to EmbedItem/EmbedOutput must be exercised above with a non-default value,
    # or a wire that dropped it would still pass.
    for field in dataclasses.fields(EmbedItem):
        assert any(getattr(i, field.name) != field.default for i in (ITEM, OTHER)), f"set {field.name}"
    for field in dataclasses.fields(EmbedOutput):
        if field.name != "vectors":
            assert getattr(OUTPUT, field.name) not in (0, field.default), f"set OUTPUT.{field.name}"


def test_results_round_trip_vectors_and_errors() -> None:
    results: list[EmbedOutput | EmbedpoolError] = [
        OUTPUT,
        InvalidArgument("input 0 has 300 tokens"),
        EmbedOutput(np.array([[1, -2]], dtype=np.int8), 2, 1, 0),
        Overloaded("busy"),
        EmbedOutput(np.array([[255, 0, 7]], dtype=np.uint8), 24, 3, 0),
        DeadlineExceeded("late"),
        MessageTooLarge("Received message larger than max (9 vs. 8)"),  # same code as Overloaded
    ]
    back = replica_wire.decode_results(replica_wire.encode_results(results))
    for sent, got in zip(results, back, strict=True):
        assert type(got) is type(sent)
        if isinstance(sent, EmbedOutput):
            assert isinstance(got, EmbedOutput)
            assert got.vectors.dtype == sent.vectors.dtype
            np.testing.assert_array_equal(got.vectors, sent.vectors)
            assert (got.dimensions, got.input_tokens, got.truncated, got.queue_ns, got.inference_ns) == (
                sent.dimensions,
                sent.input_tokens,
                sent.truncated,
                sent.queue_ns,
                sent.inference_ns,
            )
            for field in dataclasses.fields(EmbedOutput):
                if field.name != "vectors":
                    assert getattr(got, field.name) == getattr(sent, field.name), field.name
        else:
            assert isinstance(got, EmbedpoolError)
            assert got.message == sent.message


@pytest.mark.parametrize(
    "data",
    [b"", b"{", b'{"a": 1}', b"[[1, 2]]", b'[[1,"q",null,null,false,false,true,0,"float32",0]]'],
)
def test_malformed_items_are_refused(data: bytes) -> None:
    with pytest.raises(replica_wire.WireError):
        replica_wire.decode_items(data)


def test_an_unknown_error_name_comes_back_as_the_base_error() -> None:
    head = b'[{"error":["grpc","from a newer replica"]}]'
    (error,) = replica_wire.decode_results(len(head).to_bytes(4, "big") + head)
    assert type(error) is EmbedpoolError and error.message == "from a newer replica"


def test_malformed_results_are_refused() -> None:
    good = replica_wire.encode_results([EmbedOutput(np.ones((1, 4), np.float32), 4, 1, 0)])
    for bad in (good[:-1], good + b"x", good[:3], b"\x00\x00\x00\x05[{}]]"):
        with pytest.raises(replica_wire.WireError):
            replica_wire.decode_results(bad)


# ---- endpoints and fallback ----------------------------------------------------------------------


class Replica:
    """A DirectServer on 127.0.0.1 over a FakeBackend, and its registry entry."""

    def __init__(self, replica_id: str, delay: float = 0.0) -> None:
        self.model = FakeBackend(delay=delay)
        self.server = DirectServer(self._embed)
        self.replica_id = replica_id
        self.published = time.time()
        self.beside: list[bool] = []  # per batch: did it come as a BESIDE frame

    async def _embed(self, items: list[EmbedItem], beside: bool) -> list[EmbedOutput | EmbedpoolError]:
        self.beside.append(beside)
        return await self.model.embed(items)

    async def __aenter__(self) -> Replica:
        await self.server.start("127.0.0.1")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(0)

    @property
    def entry(self) -> Entry:
        return Entry("v", self.replica_id, self.server.address, self.server.token, self.published)


def _check(items: list[EmbedItem], results: list[EmbedOutput | EmbedpoolError]) -> None:
    for item, result in zip(items, results, strict=True):
        assert isinstance(result, EmbedOutput)
        np.testing.assert_array_equal(result.vectors, np.stack([vector(t) for t in item.texts]))


async def test_batches_go_direct_and_come_back_whole() -> None:
    handle = FakeBackend()
    backend = DirectVariantBackend("v", handle, max_ongoing=4)
    async with Replica("r1") as replica:
        backend.update([replica.entry])
        items = [EmbedItem(texts=["a", "b"]), EmbedItem(texts=["c"])]
        _check(items, await backend.embed(items))
    assert replica.model.seen == ["a", "b", "c"]
    assert handle.seen == []
    assert (backend.direct_batches, backend.fallback_batches) == (1, 0)


async def test_no_endpoint_falls_back_to_the_handle() -> None:
    handle = FakeBackend()
    backend = DirectVariantBackend("v", handle, max_ongoing=4)
    items = [EmbedItem(texts=["a"])]
    _check(items, await backend.embed(items))
    assert handle.seen == ["a"]
    assert backend.fallback_batches == 1


async def test_a_dead_replica_is_resent_through_the_handle_and_not_chosen_again() -> None:
    handle = FakeBackend()
    backend = DirectVariantBackend("v", handle, max_ongoing=4)
    async with Replica("r1") as replica:
        entry = replica.entry
    backend.update([entry])  # listed, but its server is gone
    items = [EmbedItem(texts=["a"])]
    _check(items, await backend.embed(items))
    assert handle.seen == ["a"]
    assert backend.endpoints == {}
    backend.update([entry])  # the same stale publication does not bring it back
    assert backend.endpoints == {}
    backend.update([replace(entry, published=entry.published + 1)])  # a newer heartbeat does
    assert list(backend.endpoints) == ["r1"]


async def test_a_wrong_token_is_refused_and_the_batch_falls_back() -> None:
    handle = FakeBackend()
    backend = DirectVariantBackend("v", handle, max_ongoing=4)
    async with Replica("r1") as replica:
        backend.update([replace(replica.entry, token="guess")])
        items = [EmbedItem(texts=["a"])]
        _check(items, await backend.embed(items))
        assert replica.model.seen == []
    assert handle.seen == ["a"]


async def _frames(address: str, *frames: tuple[int, int, bytes]) -> list[tuple[int, int, bytes]]:
    """Send raw frames to a replica; what it answers until it hangs up or goes quiet."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    for kind, request_id, payload in frames:
        writer.writelines(replica_wire.frame(kind, request_id, payload))
    answers = []
    try:
        while True:
            answers.append(await asyncio.wait_for(replica_wire.read_frame(reader), 0.5))
    except (asyncio.IncompleteReadError, asyncio.TimeoutError):
        pass
    writer.close()
    return answers


async def test_replica_refuses_a_malformed_body_and_a_missing_token() -> None:
    batch = replica_wire.encode_items([EmbedItem(texts=["a"])])
    async with Replica("r1") as replica:
        hello = (replica_wire.HELLO, 0, replica.server.token.encode())
        [(kind, request_id, payload)] = await _frames(
            replica.server.address, hello, (replica_wire.BATCH, 7, b"[1]")
        )
        assert (kind, request_id) == (replica_wire.REFUSED, 7)
        status, message = replica_wire.read_refusal(payload)
        assert status == replica_wire.INVALID_ARGUMENT and "malformed batch" in message
        for opening in [
            (replica_wire.BATCH, 1, batch),
            (replica_wire.HELLO, 0, b"guess"),
            (replica_wire.HELLO, 0, b"x" * 2000),
        ]:
            [(kind, request_id, payload)] = await _frames(replica.server.address, opening)
            assert (kind, request_id) == (replica_wire.REFUSED, 0)
            assert replica_wire.read_refusal(payload)[0] == replica_wire.UNAUTHENTICATED
        # A good batch after a bad one on the same connection is answered.
        answers = await _frames(
            replica.server.address, hello, (replica_wire.BATCH, 8, b"{"), (replica_wire.BATCH, 9, batch)
        )
        assert sorted((request_id, kind) for kind, request_id, _ in answers) == [
            (8, replica_wire.REFUSED),
            (9, replica_wire.RESULTS),
        ]
    assert replica.model.seen == ["a"]


async def test_many_batches_share_one_connection_and_answers_find_their_callers() -> None:
    backend = DirectVariantBackend("v", FakeBackend(), max_ongoing=64)
    async with Replica("r1", delay=0.05) as replica:
        backend.update([replica.entry])
        batches = [[EmbedItem(texts=[f"t{i}-{j}" for j in range(i % 3 + 1)])] for i in range(40)]
        results = await asyncio.gather(*(backend.embed(items) for items in batches))
        for items, result in zip(batches, results, strict=True):
            _check(items, result)
        (endpoint,) = backend.endpoints.values()
        assert endpoint.in_flight == 0
    assert backend.direct_batches == 40


async def test_a_replica_that_goes_away_mid_batch_is_resent_through_the_handle() -> None:
    handle = FakeBackend()
    backend = DirectVariantBackend("v", handle, max_ongoing=4)
    async with Replica("r1", delay=5.0) as replica:
        backend.update([replica.entry])
        call = asyncio.ensure_future(backend.embed([EmbedItem(texts=["a"])]))
        await asyncio.sleep(0.3)
        await replica.server.stop(0)  # hangs up with the batch under way
        _check([EmbedItem(texts=["a"])], await asyncio.wait_for(call, 10))
    assert handle.seen == ["a"] and backend.endpoints == {}


async def test_a_batch_sent_while_another_is_out_to_that_replica_comes_beside_it() -> None:
    """What lets the replica run two batches on two streams and a lone one on every thread."""
    backend = DirectVariantBackend("v", FakeBackend(), max_ongoing=4)
    async with Replica("r1", delay=0.2) as one, Replica("r2", delay=0.2) as two:
        backend.update([one.entry])
        first = asyncio.ensure_future(backend.embed([EmbedItem(texts=["a"])]))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(backend.embed([EmbedItem(texts=["b"])]))
        await asyncio.gather(first, second)
        await backend.embed([EmbedItem(texts=["c"])])  # alone again
        assert one.beside == [False, True, False]
        backend.update([one.entry, two.entry])  # one batch out to each: neither is beside another
        await asyncio.gather(*(backend.embed([EmbedItem(texts=[t])]) for t in "de"))
        assert one.beside[3:] == two.beside == [False]


async def test_a_caller_that_gives_up_leaves_the_connection_serving() -> None:
    backend = DirectVariantBackend("v", FakeBackend(), max_ongoing=4)
    async with Replica("r1", delay=0.3) as replica:
        backend.update([replica.entry])
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(backend.embed([EmbedItem(texts=["late"])]), 0.05)
        items = [EmbedItem(texts=["b"])]
        _check(items, await backend.embed(items))
    assert backend.fallback_batches == 0


async def test_least_loaded_endpoint_is_chosen_and_a_full_one_falls_back() -> None:
    handle = FakeBackend()
    backend = DirectVariantBackend("v", handle, max_ongoing=1)
    async with Replica("r1", delay=0.2) as one, Replica("r2", delay=0.2) as two:
        backend.update([one.entry, two.entry])
        calls = [backend.embed([EmbedItem(texts=[f"t{i}"])]) for i in range(3)]
        results = await asyncio.gather(*calls)
        assert one.server.ongoing == two.server.ongoing == 0
    assert len(one.model.seen) == len(two.model.seen) == 1  # one each, in parallel
    assert len(handle.seen) == 1  # both at max_ongoing: the third went through Ray
    for i, result in enumerate(results):
        _check([EmbedItem(texts=[f"t{i}"])], result)


async def test_replica_counts_ongoing_batches_for_autoscaling() -> None:
    async with Replica("r1", delay=0.2) as replica:
        backend = DirectVariantBackend("v", FakeBackend(), max_ongoing=4)
        backend.update([replica.entry])
        task = asyncio.ensure_future(backend.embed([EmbedItem(texts=["a"])]))
        await asyncio.sleep(0.1)
        assert replica.server.ongoing == 1
        await task
        assert replica.server.ongoing == 0


async def test_unlisted_endpoints_are_dropped() -> None:
    backend = DirectVariantBackend("v", FakeBackend(), max_ongoing=4)
    async with Replica("r1") as one, Replica("r2") as two:
        backend.update([one.entry, two.entry])
        assert sorted(backend.endpoints) == ["r1", "r2"]
        backend.update([two.entry])
        assert list(backend.endpoints) == ["r2"]


async def test_a_replica_error_other_than_transport_is_not_resent() -> None:
    handle = FakeBackend()
    backend = DirectVariantBackend("v", handle, max_ongoing=4)
    async with Replica("r1") as replica:
        replica.model.fail_with = RuntimeError("model exploded")
        backend.update([replica.entry])
        with pytest.raises(EmbedpoolError, match="replica call failed: UNKNOWN"):
            await backend.embed([EmbedItem(texts=["a"])])


# ---- autoscaling -------------------------------------------------------------------------------


class _Ctx:
    def __init__(self, running: int, requests: float, direct: dict[str, float], target: float = 2.0) -> None:
        self.current_num_replicas = running
        self.target_num_replicas = running
        self.total_num_requests = requests
        self.aggregated_metrics = {DIRECT_ONGOING: direct}

        class Config:
            @staticmethod
            def get_target_ongoing_requests() -> float:
                return target

        self.config = Config()


def test_policy_counts_direct_batches_with_serves_own() -> None:
    desired, _ = direct_aware_policy(_Ctx(2, requests=1, direct={"a": 4.0, "b": 3.0}))
    assert desired == pytest.approx(4.0)  # (1 + 7) / 2
    assert direct_aware_policy(_Ctx(1, requests=0, direct={}))[0] == 0


def test_policy_is_importable_as_serve_resolves_it() -> None:
    from ray.serve.config import AutoscalingConfig

    from embedpool.server.config.catalogue import VariantConfig
    from embedpool.server.serving.app import replica_options

    variant = VariantConfig.model_validate({"autoscaling": {"min_replicas": 0, "max_replicas": 3}})
    config = AutoscalingConfig(**replica_options(variant, 10)["autoscaling_config"])
    assert config.policy.policy_function == POLICY
    policy = config.policy.get_policy()  # what Serve's controller will run
    assert policy(_Ctx(2, requests=0, direct={"a": 4.0}))[0] == pytest.approx(2.0)
    assert "policy" not in replica_options(variant, 10, direct=False)["autoscaling_config"]


async def test_frames_read_together_are_all_counted_before_the_first_runs() -> None:
    seen: list[int] = []

    async def embed(items: list[EmbedItem], beside: bool) -> list[EmbedOutput | EmbedpoolError]:
        seen.append(server.ongoing)
        return [EmbedOutput(np.zeros((len(i.texts), 2), np.float32), 2, 1, 0) for i in items]

    server = DirectServer(embed)
    await server.start("127.0.0.1")
    host, port = server.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    payload = replica_wire.encode_items([EmbedItem(texts=["a"])])
    writer.writelines(replica_wire.frame(replica_wire.HELLO, 0, server.token.encode()))
    for request_id in (1, 2, 3):  # one write: the replica reads all three before it runs one
        writer.writelines(replica_wire.frame(replica_wire.BATCH, request_id, payload))
    await writer.drain()
    for _ in range(3):
        assert (await replica_wire.read_frame(reader))[0] == replica_wire.RESULTS
    assert seen[0] == 3 and server.ongoing == 0
    writer.close()
    await server.stop(0)


def test_the_autoscaling_figure_is_the_mean_held_over_time_not_a_sample(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [0]
    monkeypatch.setattr(receiver.time, "monotonic_ns", lambda: clock[0])
    server = DirectServer(lambda items, beside: FakeBackend().embed(items))
    server._add(2)
    clock[0] += 50
    server._add(-2)
    clock[0] += 50  # idle for the second half: a sample now would say 0
    assert server.mean_ongoing() == pytest.approx(1.0)
    server._add(1)
    clock[0] += 10
    assert server.mean_ongoing() == pytest.approx(1.0)  # a new window starts at each report
    assert server.mean_ongoing() == pytest.approx(1.0)  # no time passed: what is held now
