"""The notifier's settings catch-up against a consumer that misbehaves as aiokafka's can: an
offset query that never returns while a coordinator is away, a rebalance after another, end
offsets that time out. The wait is bounded whatever Kafka does, and it ends as soon as every
partition's settings are stored, by this replica or by whoever holds the partition. (The
real broker case, a replica with no settings partition, is in tests/integration.)"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import IllegalStateError, KafkaTimeoutError
from prometheus_client import CollectorRegistry

from notifier.adapters.memory_ledger import MemoryLedger
from notifier.entrypoints.consumers import Inputs
from notifier.metrics import Metrics
from notifier.service_layer.scheduling import Scheduler
from notifier.settings import Settings

TOPIC = "customer.settings"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


class Consumer:
    """The part of `AIOKafkaConsumer` the catch-up uses; each query can be scripted."""

    def __init__(
        self,
        ends: dict[TopicPartition, int],
        starts: dict[TopicPartition, int] | None = None,
        held: frozenset[TopicPartition] = frozenset(),
    ) -> None:
        self.ends = ends
        self.starts = starts or {}
        self.held = set(held)
        self.commits: dict[TopicPartition, int] = {}
        self.on_committed: Callable[[TopicPartition], Any] | None = None
        self.on_position: Callable[[TopicPartition], Any] | None = None
        self.on_end_offsets: Callable[[], Any] | None = None
        self.committed_calls = 0

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {tp.partition for tp in self.ends} if topic == TOPIC and self.ends else None

    async def end_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.on_end_offsets is not None:
            await self.on_end_offsets()
        return {tp: self.ends[tp] for tp in parts}

    async def beginning_offsets(self, parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.starts.get(tp, 0) for tp in parts}

    def assignment(self) -> set[TopicPartition]:
        return set(self.held)

    async def position(self, tp: TopicPartition) -> int:
        if self.on_position is not None:
            await self.on_position(tp)
        return self.commits.get(tp, 0)

    async def committed(self, tp: TopicPartition) -> int | None:
        self.committed_calls += 1
        if self.on_committed is not None:
            await self.on_committed(tp)
        return self.commits.get(tp)


def inputs() -> Inputs:
    ledger, metrics = MemoryLedger(), Metrics.create(CollectorRegistry())
    scheduler = Scheduler(ledger, metrics, sms_enabled=False)

    async def publish(*_: Any) -> None:
        return None

    return Inputs(
        Settings(topic_settings=TOPIC),
        scheduler,
        metrics,
        publish,  # type: ignore[arg-type]
        asyncio.Event(),
        None,  # type: ignore[arg-type]  # no batch is applied in these cases
    )


async def timed(consumer: Consumer, limit_s: float = 1.0) -> float:
    started = time.monotonic()
    await inputs()._catch_up(consumer, limit_s=limit_s)  # type: ignore[arg-type]
    return time.monotonic() - started


async def test_no_settings_topic_or_only_empty_partitions_need_no_wait() -> None:
    assert await timed(Consumer({}), limit_s=30) < 5
    emptied = Consumer({P0: 40, P1: 0}, starts={P0: 40})  # retention removed all of P0
    assert await timed(emptied, limit_s=30) < 5
    assert emptied.committed_calls == 0


async def test_partitions_another_replica_holds_end_the_wait_once_committed_to_their_end() -> None:
    consumer = Consumer({P0: 5, P1: 3})

    async def holder() -> None:
        await asyncio.sleep(0.3)
        consumer.commits[P0] = 5
        await asyncio.sleep(0.3)
        consumer.commits[P1] = 2  # not yet: one setting to go
        await asyncio.sleep(0.3)
        consumer.commits[P1] = 3

    task = asyncio.create_task(holder())
    elapsed = await timed(consumer, limit_s=30)
    await task
    assert 0.9 <= elapsed < 5, elapsed  # ends with the last commit, not at the bound


async def test_an_offset_query_that_never_returns_is_cut_off_at_the_bound(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = Consumer({P0: 5})

    async def coordinator_away(_: TopicPartition) -> None:
        await asyncio.Event().wait()

    consumer.on_committed = coordinator_away
    with caplog.at_level(logging.WARNING):
        elapsed = await timed(consumer)
    assert 1.0 <= elapsed < 3.0, elapsed
    assert "partition 0 not stored up to 5" in caplog.text


async def test_end_offsets_that_time_out_do_not_stop_the_notifier(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = Consumer({P0: 5})

    async def leader_away() -> None:
        raise KafkaTimeoutError()

    consumer.on_end_offsets = leader_away
    with caplog.at_level(logging.WARNING):
        assert await timed(consumer, limit_s=30) < 5
    assert "end offsets unknown" in caplog.text and "KafkaTimeoutError" in caplog.text


async def test_a_partition_revoked_mid_query_is_then_read_from_its_new_holders_commits() -> None:
    consumer = Consumer({P0: 5}, held=frozenset({P0}))

    async def revoked(tp: TopicPartition) -> None:
        consumer.held.discard(tp)  # the rebalance gave it to another replica
        raise IllegalStateError("No current assignment for partition")

    async def new_holder() -> None:
        await asyncio.sleep(0.3)
        consumer.commits[P0] = 5

    consumer.on_position = revoked
    task = asyncio.create_task(new_holder())
    elapsed = await timed(consumer, limit_s=30)
    await task
    assert elapsed < 5, elapsed
    assert consumer.committed_calls >= 2


async def test_stopping_ends_the_wait_at_once() -> None:
    waiting = inputs()
    task = asyncio.create_task(waiting._catch_up(Consumer({P0: 5}), limit_s=30))  # type: ignore[arg-type]
    await asyncio.sleep(0.3)
    waiting.stop()
    started = time.monotonic()
    await task
    assert time.monotonic() - started < 5


async def test_a_dead_fetch_task_ends_the_input_loop() -> None:
    """aiokafka's fetch task died (uvloop's closed-transport error): getmany returns nothing
    for ever. The loop ends, with the cause, for the supervisor to restart the notifier."""

    async def dies() -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True>")

    class Fetcherless:
        def __init__(self) -> None:
            self._fetcher = type("Fetcher", (), {})()
            self._fetcher._fetch_task = asyncio.create_task(dies())

        async def getmany(self, **_: Any) -> dict[TopicPartition, list[Any]]:
            await asyncio.sleep(0.01)
            return {}

    consumer = Fetcherless()
    with pytest.raises(RuntimeError, match="background task of the alerts consumer died") as caught:
        async with asyncio.timeout(5):
            await inputs()._loop(consumer, None, "alerts")  # type: ignore[arg-type]
    assert "TCPTransport" in str(caught.value.__cause__)
