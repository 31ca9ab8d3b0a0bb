"""Publishing to Kafka with acks=all and idempotence; `publish` returns once every message
is acknowledged, in order per partition."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder

from .aiokafka_tasks import sender_failure

log = logging.getLogger(__name__)

BATCHED_VALUE_MAX = 512 * 1024
"""Values up to this size go into record batches; larger ones take `send`'s size check."""


@lru_cache(maxsize=1 << 16)
def key_hash(key: bytes) -> int:
    """Kafka's default partitioner's hash of a key (the Java client's murmur2, positive):
    its partition is this modulo the topic's partition count. Cached: aiokafka's murmur2 is
    pure Python (~3 µs), and a fleet's cards repeat."""
    return int(murmur2(key) & 0x7FFFFFFF)


async def _acknowledged(futures: Sequence[asyncio.Future[Any]]) -> None:
    """Wait for every delivery; the first failure is raised once all have settled."""
    results = await asyncio.gather(*futures, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


async def hand_over(
    producer: AIOKafkaProducer,
    messages: Sequence[tuple[str, bytes, bytes]],
    sent: list[asyncio.Future[Any]],
) -> None:
    """Append keyed (topic, key, value) messages straight into one record batch per
    partition (the partition Kafka's default partitioner gives the key), hand each batch to
    the producer, and add its delivery future to `sent` (also when a later one fails)."""
    partitions = {t: sorted(await producer.partitions_for(t)) for t in {m[0] for m in messages}}
    open_batches: dict[tuple[str, int], BatchBuilder] = {}
    for topic, key, value in messages:
        choices = partitions[topic]
        partition = choices[key_hash(key) % len(choices)]
        batch = open_batches.get((topic, partition))
        if batch is None:
            batch = open_batches[(topic, partition)] = producer.create_batch()
        if batch.append(key=key, value=value, timestamp=None) is None:  # full (and closed)
            sent.append(await producer.send_batch(batch, topic, partition=partition))
            batch = open_batches[(topic, partition)] = producer.create_batch()
            batch.append(key=key, value=value, timestamp=None)  # first always fits
    for (topic, partition), batch in open_batches.items():
        # Closed: complete, so the producer sends it at once. An open batch waits out
        # `linger_ms` for more records that will never come (2 ms on every decision).
        batch.close()
        sent.append(await producer.send_batch(batch, topic, partition=partition))


STOP_OLD_PRODUCER_S = 5.0
"""How long a replaced producer may take to release its connections."""

SPENT: tuple[type[BaseException], ...] = (
    OutOfOrderSequenceNumber,
    UnknownProducerId,
    InvalidProducerEpoch,
    InvalidProducerIdMapping,
    ProducerFenced,
)
"""Errors after which an idempotent producer's sequence for a partition is broken for good:
aiokafka 0.14 never resets it (a batch failed after taking its sequence number, e.g. one
that outlived its timeout with no partition leader, fails every later batch of that
partition with `OutOfOrderSequenceNumber`). The producer is replaced."""


@dataclass(eq=False)
class _Lease:
    """A producer and the publishes using it: a replaced producer is stopped only once the
    last of them is done. Stopping closes its client, and a publish still waiting there for
    a topic's metadata would then wait for ever."""

    producer: AIOKafkaProducer
    users: int = 0
    spent: BaseException | None = None
    retired: bool = False


class KafkaPublisher:
    """Starts its producer on first use, so it works whichever service calls it first, and
    a new one when the current one can no longer deliver.

    That happens when aiokafka's sender task dies of an error it does not expect, e.g.
    uvloop's closed-transport `RuntimeError` when a broker link is reset mid-write
    (MagicStack/uvloop#506; seen in CI under the Kafka-link fault): aiokafka then fails
    every later message with "Unexpected error during batch delivery" while the process
    looks healthy, and the outbox would wait in Redis for ever. It also happens after an
    idempotence error (`SPENT`). Nothing is lost by renewing: whatever was not acknowledged
    stays in its caller's outbox and is published again (at least once; every message
    carries its id; the new producer's id is new, so the broker does not drop a copy the old
    one had written).
    """

    def __init__(
        self,
        bootstrap_servers: str,
        client_id: str,
        *,
        idempotence: bool = True,
        on_renew: Callable[[], None] | None = None,
    ) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._idempotence = idempotence
        self._on_renew = on_renew
        self._lease: _Lease | None = None
        self._lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self.renewals = 0
        """Producers replaced because they could no longer deliver."""

    @property
    def _producer(self) -> AIOKafkaProducer | None:
        """The current producer (tests)."""
        return None if self._lease is None else self._lease.producer

    async def _acquire(self) -> _Lease:
        async with self._lock:
            lease = self._lease
            if lease is not None:
                why = lease.spent or sender_failure(lease.producer)
                if why is not None:
                    self._retire(lease, why)
                    lease = self._lease = None
            if lease is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self._bootstrap,
                    client_id=self._client_id,
                    acks="all",
                    enable_idempotence=self._idempotence,
                    linger_ms=2,
                    max_batch_size=256 * 1024,
                    request_timeout_ms=15_000,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()  # release its connections before the next attempt
                    raise
                lease = self._lease = _Lease(producer)
            lease.users += 1
            return lease

    def _release(self, lease: _Lease) -> None:
        lease.users -= 1
        if lease.retired and lease.users == 0:
            self._stop_later(lease.producer)

    def _retire(self, lease: _Lease, why: BaseException) -> None:
        """Replace `lease`'s producer: its queued batches fail now (a sender that returned
        instead of failing left them waiting for ever), and it stops once its last user
        is done."""
        log.error(
            "Kafka producer %s can no longer deliver (%s: %s; cause: %r); a new producer "
            "takes over",
            self._client_id,
            type(why).__name__,
            why,
            why.__cause__,
        )
        self.renewals += 1
        if self._on_renew is not None:
            self._on_renew()
        lease.retired = True
        accumulator = getattr(lease.producer, "_message_accumulator", None)
        if accumulator is not None and getattr(accumulator, "_exception", None) is None:
            accumulator.fail_all(why)
        if lease.users == 0:
            self._stop_later(lease.producer)

    def _stop_later(self, producer: AIOKafkaProducer) -> None:
        async def stop() -> None:
            try:
                async with asyncio.timeout(STOP_OLD_PRODUCER_S):
                    await producer.stop()
            except Exception:
                # A dead task's error is re-raised by the stop before the client closes its
                # connections: close them here, or they stay open until collected.
                for conn in list(getattr(producer.client, "_conns", {}).values()):
                    with contextlib.suppress(Exception):
                        conn.close()

        task = asyncio.create_task(stop(), name=f"stop retired producer {self._client_id}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def publish(self, messages: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Send (topic, key, value) messages and wait for all acknowledgements.

        Keyed messages are appended straight into one record batch per partition (the
        partition Kafka's default partitioner gives the key): `send` costs ~20 µs a message
        in aiokafka (a future, a partitioner call, a metadata lookup each), which made
        publishing the largest single cost of a pool's fan-out. A batch with an unkeyed or
        outsized message takes the per-message path, so order per partition is kept."""
        if not messages:
            return
        lease = await self._acquire()
        try:
            await self._send(lease.producer, messages)
        except SPENT as exc:
            lease.spent = lease.spent or exc  # replaced at the next publish
            raise
        finally:
            self._release(lease)

    @staticmethod
    async def _send(
        producer: AIOKafkaProducer, messages: Sequence[tuple[str, bytes | None, bytes]]
    ) -> None:
        if any(k is None or len(v) > BATCHED_VALUE_MAX for _, k, v in messages):
            await _acknowledged([await producer.send(t, value=v, key=k) for t, k, v in messages])
            return
        sent: list[asyncio.Future[Any]] = []
        try:
            await hand_over(producer, cast(Sequence[tuple[str, bytes, bytes]], messages), sent)
        except BaseException:
            # Nothing is acknowledged to the caller (the outbox publishes it all again);
            # the batches already handed over are waited for, so none fails unobserved.
            await asyncio.gather(*sent, return_exceptions=True)
            raise
        await _acknowledged(sent)

    async def close(self) -> None:
        async with self._lock:
            if self._lease is not None:
                await self._lease.producer.stop()
                self._lease = None
        await asyncio.gather(*self._retiring, return_exceptions=True)
