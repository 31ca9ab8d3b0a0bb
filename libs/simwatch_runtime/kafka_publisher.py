"""Publishing to Kafka with acks=all and idempotence; `publish` returns once every message
is acknowledged, in order per partition."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, cast

from aiokafka import AIOKafkaProducer
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


STOP_DEAD_PRODUCER_S = 5.0
"""How long a producer whose sender died may take to release its connections."""


class KafkaPublisher:
    """Starts its producer on first use, so it works whichever service calls it first, and
    a new one when aiokafka's sender has died.

    The sender dies of an error it does not expect, e.g. uvloop's closed-transport
    `RuntimeError` when a broker link is reset mid-write (MagicStack/uvloop#506; seen in CI
    under the Kafka-link fault). aiokafka then fails every later message with "Unexpected
    error during batch delivery" while the process looks healthy: the outbox would wait in
    Redis for ever. Nothing is lost by renewing: whatever was not acknowledged stays in its
    caller's outbox and is published again (at least once; every message carries its id).
    """

    def __init__(self, bootstrap_servers: str, client_id: str, *, idempotence: bool = True) -> None:
        self._bootstrap = bootstrap_servers
        self._client_id = client_id
        self._idempotence = idempotence
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self.renewals = 0
        """Producers replaced because their sender had died."""

    async def _started(self) -> AIOKafkaProducer:
        async with self._lock:
            dead = None if self._producer is None else sender_failure(self._producer)
            if dead is not None and self._producer is not None:
                log.error(
                    "Kafka producer %s: its sender stopped (%s: %s); a new producer takes over",
                    self._client_id,
                    type(dead).__name__,
                    dead,
                )
                old, self._producer = self._producer, None
                self.renewals += 1
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(STOP_DEAD_PRODUCER_S):
                        await old.stop()
            if self._producer is None:
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
                self._producer = producer
            return self._producer

    async def publish(self, messages: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        """Send (topic, key, value) messages and wait for all acknowledgements.

        Keyed messages are appended straight into one record batch per partition (the
        partition Kafka's default partitioner gives the key): `send` costs ~20 µs a message
        in aiokafka (a future, a partitioner call, a metadata lookup each), which made
        publishing the largest single cost of a pool's fan-out. A batch with an unkeyed or
        outsized message takes the per-message path, so order per partition is kept."""
        if not messages:
            return
        producer = await self._started()
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
            if self._producer is not None:
                await self._producer.stop()
                self._producer = None
