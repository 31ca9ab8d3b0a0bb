"""Offered load that costs the load generator little: records appended straight into one
Kafka record batch per partition.

The bench's generator shares the machine's two cores with the worker it measures. aiokafka's
`send` costs ~20 µs of Python per message, so offering 25 000 records/s that way took about
half a core away from the worker during the latency runs (and none during the throughput
runs, whose records are produced beforehand): "half capacity" was not half."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaProducer

from simwatch_runtime.kafka_publisher import hand_over

TICK_S = 0.01
"""How often the generators hand over what is due: every 10 ms, so each partition's batch
holds tens of records. Every 2 ms made batches of five records, and the broker spent most of
a core on 6 000 partition-batches a second; producers in front of a real system batch too."""


class Offer:
    """Hands keyed messages to the producer in record batches (the publisher's
    `hand_over`, without waiting for each acknowledgement); `flush` waits for them all."""

    def __init__(self, producer: AIOKafkaProducer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._sent: list[asyncio.Future[Any]] = []

    async def send(self, messages: Iterable[tuple[bytes, bytes]]) -> None:
        """Hand over (key, value) messages now; their delivery is awaited in `flush`."""
        await hand_over(self.producer, [(self.topic, k, v) for k, v in messages], self._sent)
        for f in self._sent:  # a batch that failed is records not offered: fail the run
            if f.done() and f.exception() is not None:
                raise RuntimeError("the offered load lost a batch") from f.exception()
        self._sent = [f for f in self._sent if not f.done()]

    async def flush(self) -> None:
        await asyncio.gather(*self._sent)
        self._sent = []
