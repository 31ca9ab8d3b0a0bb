"""Offsets trail durability (issue #16): `DurableCommits` commits a batch's offsets only once
a barrier started after the batch was applied has confirmed; a barrier that cannot confirm
commits nothing, and one whose writes may be gone sends the consumer back to re-read."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from simwatch_runtime.durability import Durability, Epoch, NotDurableError
from usage_monitor.entrypoints import commits as commits_module
from usage_monitor.entrypoints.commits import DurableCommits
from usage_monitor.metrics import Metrics

A, B = TopicPartition("usage", 0), TopicPartition("usage", 1)


class FakeConsumer:
    def __init__(self) -> None:
        self.committed: list[dict[TopicPartition, int]] = []
        self.seeks: dict[TopicPartition, int] = {}
        self.assigned = {A, B}

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(dict(offsets))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks[tp] = offset


class FakeBarrier:
    """Each `confirm` waits for the test to settle it: `ok()`, `fail(reapply)`."""

    def __init__(self, level: Durability = Durability.FSYNC) -> None:
        self.level = level
        self.epochs = 0
        self.pending: list[asyncio.Future[None]] = []

    @property
    def enabled(self) -> bool:
        return self.level is not Durability.MEMORY

    async def epoch(self) -> Epoch:
        self.epochs += 1
        return frozenset({("redis", f"run-{self.epochs}")})

    async def confirm(self, epoch: Epoch) -> None:
        if not self.enabled:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(future)
        await future

    async def _next(self) -> asyncio.Future[None]:
        for _ in range(10):  # the barrier task has started, not yet run
            if self.pending:
                break
            await asyncio.sleep(0)
        return self.pending.pop(0)

    async def ok(self) -> None:
        (await self._next()).set_result(None)
        await asyncio.sleep(0)

    async def fail(self, reapply: bool) -> None:
        (await self._next()).set_exception(NotDurableError("no", reapply=reapply))
        await asyncio.sleep(0)


def make(level: Durability = Durability.FSYNC) -> tuple[DurableCommits, FakeConsumer, FakeBarrier]:
    consumer, barrier = FakeConsumer(), FakeBarrier(level)
    metrics = Metrics.create(CollectorRegistry())
    return DurableCommits(consumer, barrier, metrics), consumer, barrier  # type: ignore[arg-type]


async def batch(
    c: DurableCommits, first: dict[TopicPartition, int], following: dict[TopicPartition, int]
) -> None:
    await c.begin()
    await c.applied(first, following)


async def test_nothing_is_committed_before_the_barrier_confirms() -> None:
    c, consumer, barrier = make()
    await batch(c, {A: 0}, {A: 100})
    await batch(c, {A: 100, B: 0}, {A: 180, B: 50})  # applied while the barrier waits
    assert consumer.committed == []
    await barrier.ok()  # the first barrier covered the first batch only
    await c.advance()
    assert consumer.committed == [{A: 100}]
    await barrier.ok()  # the second, started then, covers the second batch
    await c.advance()
    assert consumer.committed == [{A: 100}, {A: 180, B: 50}]


async def test_an_unconfirmed_barrier_commits_nothing_and_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(commits_module, "PAUSE_S", 0.0)
    c, consumer, barrier = make()
    await batch(c, {A: 0}, {A: 100})
    await barrier.fail(reapply=False)  # e.g. WAITAOF refused: the AOF was switched off
    await c.advance()
    assert consumer.committed == [] and consumer.seeks == {}
    await asyncio.sleep(0)
    assert len(barrier.pending) == 1, "a new barrier covers the same batch"
    await barrier.ok()
    await c.advance()
    assert consumer.committed == [{A: 100}]


async def test_writes_that_may_be_gone_are_read_again_under_a_new_epoch() -> None:
    c, consumer, barrier = make()
    await batch(c, {A: 40}, {A: 100})
    await batch(c, {A: 100, B: 7}, {A: 150, B: 20})
    await barrier.fail(reapply=True)  # the primary failed over: the replica may lack them
    await c.advance()
    assert consumer.committed == []
    assert consumer.seeks == {A: 40, B: 7}, "back to each partition's first uncommitted offset"
    assert c.epoch is None
    assert c.generation == 1, "a batch fetched before the re-read is stale (the consumer drops it)"
    await batch(c, {A: 40, B: 7}, {A: 150, B: 20})  # re-applied
    assert barrier.epochs == 2, "under an epoch taken after the failure"
    await barrier.ok()
    await c.advance()
    assert consumer.committed == [{A: 150, B: 20}]


async def test_partitions_that_moved_are_not_committed() -> None:
    c, consumer, barrier = make()
    await batch(c, {A: 0, B: 0}, {A: 10, B: 10})
    consumer.assigned = {A}
    await barrier.ok()
    await c.advance()
    assert consumer.committed == [{A: 10}]


async def test_memory_level_commits_each_batch_before_the_next() -> None:
    c, consumer, _ = make(Durability.MEMORY)
    await batch(c, {A: 0}, {A: 10})
    assert consumer.committed == [{A: 10}]
    await batch(c, {A: 10}, {A: 20})
    assert consumer.committed == [{A: 10}, {A: 20}]


async def test_a_reread_rewinds_the_batches_still_being_applied_and_drops_them() -> None:
    """Two batches in flight (usage_consumer.IN_FLIGHT): the second was fetched, not yet
    applied, when the first's barrier found its writes may be gone. The re-read must start
    at the second's offsets too on a partition only it covers, and the second, applied
    later, must record nothing (it is read again)."""
    c, consumer, barrier = make()
    first_a = {A: 40}
    g1 = c.fetched(first_a)
    await c.begin()
    assert await c.applied(first_a, {A: 100}, g1)
    first_b = {A: 100, B: 7}
    g2 = c.fetched(first_b)  # fetched while the first is being confirmed
    await barrier.fail(reapply=True)
    await c.advance()
    assert consumer.seeks == {A: 40, B: 7}, "B is rewound although no applied batch covered it"
    assert not await c.applied(first_b, {A: 150, B: 20}, g2), "stale: it records nothing"
    assert consumer.committed == []
    g3 = c.fetched({A: 40, B: 7})  # read again, under the new generation
    await c.begin()
    assert await c.applied({A: 40, B: 7}, {A: 150, B: 20}, g3)
    await barrier.ok()
    await c.advance()
    assert consumer.committed == [{A: 150, B: 20}]


async def test_a_batch_applied_is_no_longer_rewound_past_its_commit() -> None:
    c, consumer, barrier = make()
    first = {A: 0}
    g = c.fetched(first)
    await c.begin()
    await c.applied(first, {A: 10}, g)
    await barrier.ok()
    await c.advance()
    assert consumer.committed == [{A: 10}]
    g = c.fetched({A: 10})
    await c.applied({A: 10}, {A: 20}, g)
    await barrier.fail(reapply=True)
    await c.advance()
    assert consumer.seeks == {A: 10}, "from the first uncommitted offset, not the first batch's"
